package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// valueSets are the ways the chart is rendered in these tests and in the
// flag check against the moat binary.
func valueSets() []valueSet {
	f := func(name string) string { return filepath.Join("testdata", "values", name) }
	return []valueSet{
		{name: "defaults", release: "rel"},
		{name: "mtls", release: "rel", namespace: "shop", args: []string{"-f", f("mtls.yaml")}},
		{name: "plain-container", release: "rel", kubeVersion: "1.27.0", args: []string{"-f", f("plain-container.yaml")}},
		{name: "cert-manager", release: "edge", namespace: "ingress", args: []string{"-f", f("cert-manager.yaml")}},
		{name: "self-signed", release: "rel", args: []string{"-f", f("self-signed.yaml")}},
		{name: "self-signed-mtls", release: "rel", args: []string{"-f", f("self-signed-mtls.yaml")}},
		{name: "mtls-crl", release: "rel", args: []string{"-f", f("mtls-crl.yaml")}},
		{name: "all-flags", release: "rel", args: []string{"-f", f("all-flags.yaml")}},
		{name: "policies", release: "rel", namespace: "shop", args: []string{"-f", f("policies.yaml")}},
		{name: "workload-api", release: "rel", args: []string{"-f", f("workload-api.yaml")}},
		{name: "workload-api-hostpath", release: "rel", args: []string{"-f", f("workload-api-hostpath.yaml")}},
		{name: "remote-target", release: "rel", args: []string{"--set", "target=10.0.0.5:8080", "--set", "unsafeTarget=true"}},
		{name: "require-pq", release: "rel", args: []string{"--set", "crypto.requirePQ=true"}},
		{name: "library", chart: parentChart, release: "shop", namespace: "shop"},
		{name: "library-unix-socket", chart: parentChart, release: "shop", namespace: "shop", args: []string{"-f", f("library-unix-socket.yaml")}},
		{name: "library-plain", chart: parentChart, release: "shop", kubeVersion: "1.28.0",
			args: []string{"--set", "moat.nativeSidecar=false", "--set", "moat.mtls.enabled=false"}},
	}
}

// valueSetNamed is the value set of that name.
func valueSetNamed(t *testing.T, name string) valueSet {
	t.Helper()
	for _, v := range valueSets() {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no value set %q", name)
	return valueSet{}
}

// want is what the moat container of a value set must look like.
type want struct {
	native     bool
	secretName string // "" with tls.selfSigned
	listenPort int32
	statusPort int32
	grace      int64
	args       []string // must be present
	notArgs    []string // prefixes that no arg may have
	// lastInit: with a native sidecar, moat is the last init container (the
	// app's own init containers run before it).
	lastInit bool
	registry string // image.registry; "" for the default ghcr.io
}

// (The standalone example's app sleeps 5 s in preStop, which adds to the
// computed grace period: 30 s of shutdown + 10 s for the app + 5 s.)
func wants() map[string]want {
	return map[string]want{
		"defaults": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--listen=:8443", "--target=127.0.0.1:8080", "--cert-dir=/etc/moat/tls", "--disable-authentication", "--status=:9090", "--shutdown-timeout=30s", "--shutdown-delay=0s"},
			notArgs: []string{"--self-signed", "--enable-pprof", "--allow-", "--max-", "--proxy-protocol", "--alpn", "--cacert", "--unsafe-target"},
		},
		"remote-target": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args: []string{"--target=10.0.0.5:8080", "--unsafe-target"},
		},
		"require-pq": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--require-pq"},
			notArgs: []string{"--min-tls-version", "--tls-groups", "--max-conn-lifetime", "--timed-reload"},
		},
		"mtls": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args: []string{"--cert-dir=/etc/moat/tls", "--cacert=/etc/moat/client-ca/bundle.pem", "--allow-cn=checkout", "--allow-ou=payments",
				"--allow-dns=checkout.shop.svc.cluster.local", "--allow-uri=spiffe://cluster.local/ns/shop/sa/checkout", "--allow-uri=spiffe://cluster.local/ns/payments/sa/*"},
			notArgs: []string{"--disable-authentication"},
		},
		"mtls-crl": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args: []string{"--allow-uri=spiffe://cluster.local/ns/shop/**", "--crl=/etc/moat/crl/root.crl",
				"--crl=/etc/moat/crl/intermediate.crl", "--crl-expired=refuse"},
			notArgs: []string{"--disable-authentication"},
		},
		"plain-container": {
			native: false, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 30,
			args: []string{"--shutdown-delay=5s", "--shutdown-timeout=20s"},
		},
		"cert-manager": {
			native: true, secretName: "edge-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45,
			args: []string{"--cert-dir=/etc/moat/tls"},
		},
		"self-signed": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--self-signed", "--disable-authentication"},
			notArgs: []string{"--cert-dir=/etc/moat/tls"},
		},
		"self-signed-mtls": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--self-signed", "--cacert=/etc/moat/client-ca/ca.crt", "--allow-uri=spiffe://cluster.local/ns/shop/sa/checkout"},
			notArgs: []string{"--cert-dir", "--disable-authentication"},
		},
		"all-flags": {
			native: true, secretName: "rel-moat-tls", listenPort: 9443, statusPort: 9100, grace: 78,
			args: []string{"--listen=:9443", "--status=:9100", "--target=unix:/run/app/app.sock", "--handshake-timeout=5s", "--idle-timeout=30m",
				"--connect-timeout=2s", "--max-concurrent-conns=1000000", "--max-concurrent-handshakes=0", "--max-handshake-rate=200", "--allow-all", "--proxy-protocol=v2", "--accept-proxy-protocol=10.0.0.0/16,2001:db8::/32", "--disable-landlock", "--alpn=h2,http/1.1",
				"--enable-pprof", "--log-format=console", "--log-level=debug", "--shutdown-delay=3s", "--shutdown-timeout=60s",
				"--min-tls-version=1.3", "--tls-groups=X25519MLKEM768,X25519,P-256", "--max-conn-lifetime=12h", "--timed-reload=5m"},
		},
		"workload-api": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--use-workload-api-addr=unix:///spiffe-workload-api/spire-agent.sock", "--use-workload-api-timeout=1m", "--allow-uri=spiffe://prod.example/ns/shop/sa/*"},
			notArgs: []string{"--cert-dir", "--self-signed", "--cacert", "--disable-authentication"},
		},
		"workload-api-hostpath": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--use-workload-api-addr=unix:///spiffe-workload-api/agent.sock", "--use-workload-api-timeout=30s", "--disable-authentication"},
			notArgs: []string{"--cert-dir", "--self-signed", "--cacert"},
		},
		"library": {
			native: true, secretName: "shop-tls", listenPort: 8443, statusPort: 9090, grace: 60, lastInit: true,
			args:    []string{"--target=127.0.0.1:5000", "--allow-dns=checkout.shop.svc.cluster.local"},
			notArgs: []string{"--disable-authentication"},
		},
		"policies": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 45, registry: "mirror.example:5000",
			args: []string{"--target=127.0.0.1:8080"},
		},
		"library-unix-socket": {
			native: true, secretName: "shop-tls", listenPort: 8443, statusPort: 9090, grace: 60, lastInit: true,
			args: []string{"--target=unix:/run/app/app.sock"},
		},
		"library-plain": {
			native: false, secretName: "shop-tls", listenPort: 8443, statusPort: 9090, grace: 60,
			args: []string{"--target=127.0.0.1:5000", "--disable-authentication"},
		},
	}
}

func TestLintStrict(t *testing.T) {
	for _, v := range valueSets() {
		t.Run(v.name, func(t *testing.T) {
			if err := v.lint(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStrictDecodingCatchesMisspeltFields(t *testing.T) {
	// The decoder itself must refuse what a typo in a template would produce.
	for _, doc := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i, restartPolicyy: Always}]\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      initContainer: []\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 1}]\n  ports: [{port: 2}]\n",
		"apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  secretname: x\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec:\n  endpoints: [{prot: metrics}]\n",
		"apiVersion: v1\nkind: Pdo\nmetadata: {name: p}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n  restartpolicy: Never\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("decodeStrict accepted:\n%s", doc)
		}
	}
}

func TestRenderedManifests(t *testing.T) {
	ws := wants()
	for _, v := range valueSets() {
		t.Run(v.name, func(t *testing.T) {
			w, ok := ws[v.name]
			if !ok {
				t.Fatalf("no expectations for value set %s", v.name)
			}
			r := render(t, v)
			deps := r.deployments()
			if len(deps) != 1 {
				t.Fatalf("want 1 Deployment, got %d", len(deps))
			}
			d := deps[0]
			checkMoatPod(t, d.Spec.Template.Spec, w)
			if sel, err := metav1LabelSelector(d.Spec.Selector.MatchLabels); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
			}
			for _, s := range r.services() {
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("Service %s selects %v, pod labels are %v", s.Name, s.Spec.Selector, d.Spec.Template.Labels)
				}
				if s.Spec.Ports[0].TargetPort.IntVal != w.listenPort {
					t.Errorf("Service %s targets port %v, moat listens on %d", s.Name, s.Spec.Ports[0].TargetPort, w.listenPort)
				}
			}
		})
	}
}

func metav1LabelSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// checkMoatPod checks the moat container in a pod spec: placement and
// restartPolicy, probes, securityContext, the mounted Secret, args, ports and
// the termination grace period.
func checkMoatPod(t *testing.T, spec corev1.PodSpec, w want) {
	t.Helper()
	c, native, index, err := moatContainer(spec)
	if err != nil {
		t.Fatal(err)
	}

	// Placement and restartPolicy.
	if native != w.native {
		t.Errorf("moat is an init container: %v, want %v", native, w.native)
	}
	if w.native {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("native sidecar: restartPolicy %v, want Always", c.RestartPolicy)
		}
		if w.lastInit && index != len(spec.InitContainers)-1 {
			t.Errorf("moat is init container %d of %d, want the last", index, len(spec.InitContainers))
		}
		if len(spec.Containers) == 0 {
			t.Error("no app container next to the native sidecar")
		}
	} else if c.RestartPolicy != nil {
		t.Errorf("plain container with restartPolicy %v (only allowed on init containers)", *c.RestartPolicy)
	}

	// Image: the chart's appVersion, from image.registry when set.
	registry := "ghcr.io"
	if w.registry != "" {
		registry = w.registry
	}
	if wantImage := registry + "/moat-proxy/moat:" + chartAppVersion(t); c.Image != wantImage {
		t.Errorf("image %q, want %q", c.Image, wantImage)
	}

	// Probes on the status port.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: missing or not httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.IntVal != w.statusPort {
			t.Errorf("%s: GET %s on port %v, want %s on %d", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, w.statusPort)
		}
	}
	ports := map[int32]string{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = p.Name
	}
	if ports[w.listenPort] == "" || ports[w.statusPort] == "" {
		t.Errorf("container ports %v, want %d (TLS) and %d (status)", ports, w.listenPort, w.statusPort)
	}

	// securityContext.
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("securityContext.runAsNonRoot is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("securityContext.runAsUser %v, want 65532 (the image's user)", sc.RunAsUser)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("securityContext.readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("securityContext.allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("securityContext.privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("securityContext.capabilities %+v, want drop [ALL] and no add", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("securityContext.seccompProfile %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}

	// The TLS Secret: mounted whole (no subPath, so rotations arrive), read-only.
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].SubPath != "" || c.VolumeMounts[i].SubPathExpr != "" {
			t.Errorf("volume mount %s uses subPath: Secret updates would not reach moat", c.VolumeMounts[i].Name)
		}
		if c.VolumeMounts[i].MountPath == "/etc/moat/tls" {
			mount = &c.VolumeMounts[i]
		}
	}
	if w.secretName == "" {
		if mount != nil {
			t.Errorf("self-signed, but %s is mounted at /etc/moat/tls", mount.Name)
		}
	} else {
		if mount == nil {
			t.Fatal("no volume mounted at /etc/moat/tls (--cert-dir)")
		}
		if !mount.ReadOnly {
			t.Error("TLS volume mount is not read-only")
		}
		var vol *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == mount.Name {
				vol = &spec.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil {
			t.Fatalf("volume %s is missing or not a Secret", mount.Name)
		}
		if vol.Secret.SecretName != w.secretName {
			t.Errorf("TLS Secret %q, want %q", vol.Secret.SecretName, w.secretName)
		}
		if len(vol.Secret.Items) != 0 {
			t.Errorf("TLS Secret volume selects items %v; moat reads tls.crt, tls.key and ca.crt", vol.Secret.Items)
		}
	}
	names := map[string]bool{}
	for _, v := range spec.Volumes {
		if names[v.Name] {
			t.Errorf("duplicate volume %s", v.Name)
		}
		names[v.Name] = true
	}
	for _, m := range c.VolumeMounts {
		if !names[m.Name] {
			t.Errorf("mount %s has no volume", m.Name)
		}
	}

	// Args.
	if len(c.Args) == 0 || c.Args[0] != "server" {
		t.Fatalf("args %v do not start with server", c.Args)
	}
	for _, a := range w.args {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	for _, a := range w.notArgs {
		for _, arg := range c.Args {
			if strings.HasPrefix(arg, a) {
				t.Errorf("args %v have %s", c.Args, arg)
			}
		}
	}
	seen := map[string]bool{}
	for _, a := range c.Args[1:] {
		name, _, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(name, "--allow-") && name != "--crl" && seen[name] { // repeatable flags
			t.Errorf("flag %s given twice", name)
		}
		seen[name] = true
	}

	// terminationGracePeriodSeconds covers --shutdown-delay + --shutdown-timeout.
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := *spec.TerminationGracePeriodSeconds
	if grace != w.grace {
		t.Errorf("terminationGracePeriodSeconds %d, want %d", grace, w.grace)
	}
	delay, timeout := argDuration(t, c.Args, "--shutdown-delay"), argDuration(t, c.Args, "--shutdown-timeout")
	if time.Duration(grace)*time.Second <= delay+timeout {
		t.Errorf("terminationGracePeriodSeconds %d does not cover --shutdown-delay %v + --shutdown-timeout %v", grace, delay, timeout)
	}
}

func argDuration(t *testing.T, args []string, flag string) time.Duration {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			return d
		}
	}
	t.Fatalf("args %v lack %s", args, flag)
	return 0
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moatChart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	return chart.AppVersion
}

func TestImageTagIsAppVersion(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moatChart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Image struct {
			Tag string `json:"tag"`
		} `json:"image"`
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	if got, want := values.Image.Tag, chartAppVersion(t); got != want {
		t.Errorf("values.yaml image.tag %q, Chart.yaml appVersion %q: keep them equal", got, want)
	}
}
