package admin

import (
	"embed"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// dashboardFiles is the page, its script and its style sheet. They are
// served as they are: nothing is loaded from elsewhere.
//
//go:embed dashboard/index.html dashboard/app.js dashboard/style.css
var dashboardFiles embed.FS

// dashboardCSP confines the page to its own script, style sheet and API.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// assetType is the content type of a file served under /dashboard/assets/;
// ok is false for any other name.
func assetType(name string) (ctype string, ok bool) {
	switch name {
	case "app.js":
		return "text/javascript; charset=utf-8", true
	case "style.css":
		return "text/css; charset=utf-8", true
	}
	return "", false
}

// serveDashboardPage answers GET /dashboard with the HTML page. The page
// holds no data: it asks for the token (or takes it from the URL fragment,
// /dashboard#token=…, which browsers never send to the server; the page moves
// it to sessionStorage and removes it from the address bar) and then polls
// the authenticated JSON endpoints itself.
func serveDashboardPage(w http.ResponseWriter, _ *http.Request) {
	serveEmbedded(w, "dashboard/index.html", "text/html; charset=utf-8")
}

// serveDashboardAsset answers GET /dashboard/assets/{name}: app.js and
// style.css.
func serveDashboardAsset(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	ctype, ok := assetType(name)
	if !ok {
		writeError(w, http.StatusNotFound, "no such asset")
		return
	}
	serveEmbedded(w, "dashboard/"+name, ctype)
}

func serveEmbedded(w http.ResponseWriter, name, ctype string) {
	body, err := dashboardFiles.ReadFile(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "dashboard file missing from the binary")
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(body)
}
