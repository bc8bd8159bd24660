package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/split"
)

// Event is the JSON body of a webhook in FormatJSON: one transition of the
// rollout. The names of the transition's fields are those of the history
// (GET /dashboard/canary_overview).
type Event struct {
	// ID is the same for every attempt of this event and for no other.
	ID string `json:"id"`
	// Type is what the transition did (guard.TransitionKinds).
	Type guard.TransitionKind `json:"type"`
	Time time.Time            `json:"time"`
	// Release is the release the transition belongs to.
	Release string `json:"release"`
	// Step is the plan's step after the transition (0-based; -1 without a
	// plan), Steps the plan's length.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// From and To are the canary's weight (percent) before and after.
	From      float64 `json:"from"`
	To        float64 `json:"to"`
	FromState string  `json:"from_state"`
	ToState   string  `json:"to_state"`
	// Reason is the history's reason (for a rollback, its recommendation).
	Reason string `json:"reason"`
	// Who made it: "plan", "guard", "startup" or the admin caller
	// ("ops-alice (10.0.0.5)").
	Who string `json:"who"`
	// Replica is the fleet replica that made it ("" for a single canaryd).
	Replica string `json:"replica,omitempty"`
	// Rollback is why and on what evidence, for type rolled_back.
	Rollback *guard.RollbackRecord `json:"rollback,omitempty"`
}

// EventOf is n as FormatJSON sends it.
func EventOf(n guard.Notice) Event {
	tr := n.Transition
	return Event{
		ID: n.ID, Type: n.Kind, Time: tr.At.UTC(), Release: tr.Release, Step: n.Step, Steps: n.Steps,
		From: tr.From, To: tr.To, FromState: tr.FromState, ToState: tr.ToState,
		Reason: tr.Reason, Who: tr.Who, Replica: tr.Replica, Rollback: n.Rollback,
	}
}

// encode is n's body in format f.
func encode(f Format, n guard.Notice) ([]byte, error) {
	if f == FormatSlack {
		return json.Marshal(SlackMessageOf(n))
	}
	return json.Marshal(EventOf(n))
}

// SlackMessage is an incoming-webhook message: "text" is the notification's
// line (and what clients without blocks show), "blocks" the message.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one of the layout blocks a message uses: a section (Text
// and/or Fields) or a context (Elements).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a mrkdwn text object.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func mrkdwn(s string) SlackText { return SlackText{Type: "mrkdwn", Text: s} }

// escape makes s safe in Slack's mrkdwn: &, < and > are control characters
// there.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// emoji marks each kind of transition in the channel.
var emoji = map[guard.TransitionKind]string{
	guard.KindStarted:    ":rocket:",
	guard.KindRestarted:  ":arrows_counterclockwise:",
	guard.KindHeld:       ":warning:",
	guard.KindStep:       ":arrow_up:",
	guard.KindComplete:   ":white_check_mark:",
	guard.KindRolledBack: ":rotating_light:",
	guard.KindWeight:     ":control_knobs:",
	guard.KindPaused:     ":double_vertical_bar:",
	guard.KindResumed:    ":arrow_forward:",
	guard.KindReset:      ":leftwards_arrow_with_hook:",
	guard.KindFinished:   ":checkered_flag:",
	guard.KindStalled:    ":hourglass:",
}

// SlackMessageOf is n as FormatSlack sends it: a headline, the weights,
// states, who and why, the canary's figures for a rollback, and the
// event's id and time.
func SlackMessageOf(n guard.Notice) SlackMessage {
	tr := n.Transition
	release := "(no release id)"
	if tr.Release != "" {
		release = "`" + escape(tr.Release) + "`"
	}
	pct := func(w float64) string { return split.FormatPercent(uint32(w*100+0.5)) + "%" }
	where := ""
	if n.Step >= 0 && n.Steps > 0 {
		where = fmt.Sprintf(" (step %d of %d)", n.Step+1, n.Steps)
	}
	var head string
	switch n.Kind {
	case guard.KindStarted:
		head = fmt.Sprintf("Release %s started at %s%s", release, pct(tr.To), where)
	case guard.KindRestarted:
		head = fmt.Sprintf("canaryd restarted: release %s resumed, %s at %s", release, tr.ToState, pct(tr.To))
	case guard.KindHeld:
		head = "Rollout held at 0%: the stored state was unreadable at start"
	case guard.KindStep:
		head = fmt.Sprintf("Release %s moved to %s%s", release, pct(tr.To), where)
	case guard.KindComplete:
		head = fmt.Sprintf("Release %s complete: the canary takes %s", release, pct(tr.To))
	case guard.KindRolledBack:
		why := tr.Reason
		if n.Rollback != nil {
			why = string(n.Rollback.Reason)
		}
		head = fmt.Sprintf("Release %s rolled back: *%s*", release, escape(why))
	case guard.KindWeight:
		head = fmt.Sprintf("Release %s: weight set by hand to %s (plan paused)", release, pct(tr.To))
	case guard.KindPaused:
		head = fmt.Sprintf("Release %s paused at %s%s", release, pct(tr.To), where)
	case guard.KindResumed:
		head = fmt.Sprintf("Release %s resumed at %s%s", release, pct(tr.To), where)
	case guard.KindReset:
		head = fmt.Sprintf("Release %s reset: the plan starts again at %s", release, pct(tr.To))
	case guard.KindFinished:
		head = fmt.Sprintf("Release %s finished: the canary gets no traffic", release)
	case guard.KindStalled:
		head = fmt.Sprintf("Release %s stalled at %s%s", release, pct(tr.To), where)
	default:
		head = fmt.Sprintf("Release %s: %s", release, escape(string(n.Kind)))
	}
	mark := emoji[n.Kind]
	if mark == "" {
		mark = ":bird:"
	}
	by := escape(tr.Who)
	if tr.Replica != "" {
		by += " on " + escape(tr.Replica)
	}
	fields := []SlackText{
		mrkdwn("*Weight*\n" + pct(tr.From) + " → " + pct(tr.To)),
		mrkdwn("*State*\n" + escape(tr.FromState) + " → " + escape(tr.ToState)),
		mrkdwn("*By*\n" + by),
		mrkdwn("*Reason*\n" + escape(tr.Reason)),
	}
	blocks := []SlackBlock{{Type: "section", Text: ptr(mrkdwn(mark + " " + head))}, {Type: "section", Fields: fields}}
	if rb := n.Rollback; rb != nil {
		c := rb.Canary
		text := fmt.Sprintf("*Canary at the decision*: %d requests, %d errors (%.2f%%), p95 %.1f ms", c.Requests, c.Errors, 100*c.ErrorRate, c.P95Ms)
		if rb.Detail != "" {
			text += "\n" + escape(rb.Detail)
		}
		var failing []string
		for _, g := range rb.Gates {
			if g.Verdict == "fail" {
				failing = append(failing, "`"+escape(g.Name)+"`")
			}
		}
		if len(failing) > 0 {
			text += "\nFailing gates: " + strings.Join(failing, ", ")
		}
		blocks = append(blocks, SlackBlock{Type: "section", Text: ptr(mrkdwn(text))})
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackText{
		mrkdwn("canaryd · " + tr.At.UTC().Format(time.RFC3339) + " · event " + n.ID),
	}})
	plainHead := strings.NewReplacer("`", "", "*", "").Replace(head)
	return SlackMessage{Text: mark + " " + plainHead, Blocks: blocks}
}

func ptr[T any](v T) *T { return &v }
