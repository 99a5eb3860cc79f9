package charttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestNotes renders NOTES.txt, which `helm template` leaves out: a copy of the
// chart wraps it in a named template and a ConfigMap that carries the result.
func TestNotes(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "moat")
	if err := copyDir(moatChart, chart); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tpl := `{{- define "moattest.notes" -}}` + string(notes) + `{{- end -}}`
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"moattest.notes\" . | quote }}\n"
	for name, content := range map[string]string{"_moattest_notes.tpl": tpl, "moattest-notes.yaml": cm} {
		if err := os.WriteFile(filepath.Join(chart, "templates", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"defaults", nil, []string{
			"moat reads Secret demo-moat-tls (tls.crt, tls.key, ca.crt)",
			"kubectl -n web create secret generic demo-moat-tls",
			"kubectl -n web port-forward svc/demo-moat 8443:443",
			"https://demo-moat.web.svc:443/",
			"helm test demo -n web",
			"moat reloads the mounted files",
		}, []string{"--insecure", "Clients need"}},
		{"cert-manager mtls", []string{"--set", "certManager.enabled=true", "--set", "certManager.issuerRef.name=ca",
			"--set", "mtls.enabled=true", "--set", "mtls.allowCN[0]=a"}, []string{
			"cert-manager issues Secret demo-moat-tls (Certificate demo-moat)",
			"--cert client.crt --key client.key",
			"Clients need a certificate signed by the CA in demo-moat-tls",
		}, []string{"create secret"}},
		{"self-signed", []string{"--set", "tls.selfSigned=true"}, []string{"self-signed certificate", "curl --insecure"}, []string{"--cacert"}},
		{"library only", []string{"--set", "example.enabled=false"}, []string{"without its example", `"moat.sidecar"`}, []string{"port-forward"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := valueSet{name: tc.name, chart: chart, release: "demo", namespace: "web",
				args: append([]string{"--show-only", "templates/moattest-notes.yaml"}, tc.args...)}
			objs := render(t, v).all("ConfigMap")
			if len(objs) != 1 {
				t.Fatalf("want the notes ConfigMap, got %d objects", len(objs))
			}
			text := objs[0].obj.(*corev1.ConfigMap).Data["notes"]
			if os.Getenv("MOAT_SHOW_NOTES") != "" {
				t.Log(text)
			}
			for _, s := range tc.want {
				if !strings.Contains(text, s) {
					t.Errorf("NOTES lack %q:\n%s", s, text)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(text, s) {
					t.Errorf("NOTES have %q:\n%s", s, text)
				}
			}
			if strings.Contains(text, "<no value>") {
				t.Errorf("NOTES render a missing value:\n%s", text)
			}
		})
	}
}
