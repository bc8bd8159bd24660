// Package notify tells the outside world of a rollout: Webhook POSTs an
// event for every transition the guard stores (CANARY_WEBHOOK_URL), and
// Confirmer asks an endpoint whether the plan may advance
// (CANARY_CONFIRM_URL). Both implement interfaces the guard declares
// (guard.Notifier, guard.Confirmer); cmd builds and wires them.
//
// # Events
//
// Webhook.Notify never waits: it puts the notice in a bounded queue
// (Config.QueueSize, 1,000 events) and returns. One goroutine (Run)
// delivers the queue in order, one event at a time, so a receiver sees the
// transitions in the order of the rollout's history. The body is JSON:
//
//	{"id": "9f2c…", "type": "rolled_back", "time": "2026-11-27T14:16:33.1Z",
//	 "release": "v1.0.1", "step": 0, "steps": 3,
//	 "from": 5, "to": 0, "from_state": "progressing", "to_state": "rolled_back",
//	 "reason": "rollback_error_rate", "who": "guard", "replica": "web-1:8000",
//	 "rollback": {"time": …, "reason": "rollback_error_rate", "canary": {…}, "gates": […]}}
//
// or, with FormatSlack, Slack's incoming-webhook message ("text" and
// "blocks"). "type" is one of guard.TransitionKinds; "id" is the same for
// every attempt of one event and for no other event (a hash of the
// transition), so a receiver deduplicates on it.
//
// # Signature
//
// With a secret, every request carries X-Canaryd-Signature: sha256=<hex>,
// the HMAC-SHA256 of the exact body under the secret (as GitHub's
// X-Hub-Signature-256): the receiver computes it over the raw body and
// compares in constant time (Verify). X-Canaryd-Event carries the type and
// X-Canaryd-Delivery the id.
//
// # Retries
//
// An attempt that fails (no answer within Config.AttemptTimeout, a
// connection error, 408, 425, 429 or 5xx) is retried after a backoff that
// starts at Config.FirstBackoff (0.5 s) and doubles up to Config.MaxBackoff
// (1 minute), or after the answer's Retry-After when that is longer (at
// most MaxBackoff), until Config.RetryFor (10 minutes) has passed since the
// first attempt; then the event is given up. Any other answer (a 4xx, a
// 3xx: redirects are not followed) is final: retrying cannot help. Later
// events wait behind one that is being retried: the order is kept.
//
// # Full queue
//
// When the queue is full (a receiver down for long while transitions keep
// coming), the oldest waiting event is dropped to make room for the new
// one: the newest state of the rollout is what matters. At shutdown, the
// events still waiting get one last attempt each within
// Config.DrainTimeout (5 s); those that fail are dropped.
//
// canary_webhook_deliveries_total{result} counts: delivered (a 2xx),
// retried (an attempt that failed and will be retried), rejected (a final
// answer other than 2xx), expired (given up after RetryFor), dropped (never
// delivered: the queue was full, or canaryd stopped).
//
// # Confirmation
//
// Confirmer POSTs the proposed advance as JSON (release, step, to_step,
// to_state, from and to weights, since when it is ready, the canary's
// figures), signed like the events when a secret is set. A 2xx answer lets
// the plan advance; anything else (the status and the first 200 bytes of
// its body become the reason), no answer within the guard's timeout or a
// connection error holds it.
package notify
