package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
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
		{name: "all-flags", release: "rel", args: []string{"-f", f("all-flags.yaml")}},
		{name: "remote-target", release: "rel", args: []string{"--set", "target=10.0.0.5:8080", "--set", "unsafeTarget=true"}},
		{name: "library", chart: parentChart, release: "shop", namespace: "shop"},
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
}

func wants() map[string]want {
	return map[string]want{
		"defaults": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 40,
			args:    []string{"--listen=:8443", "--target=127.0.0.1:8080", "--cert-dir=/etc/moat/tls", "--disable-authentication", "--status=:9090", "--shutdown-timeout=30s", "--shutdown-delay=0s"},
			notArgs: []string{"--self-signed", "--enable-pprof", "--allow-", "--max-", "--proxy-protocol", "--alpn", "--cacert", "--unsafe-target"},
		},
		"remote-target": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 40,
			args: []string{"--target=10.0.0.5:8080", "--unsafe-target"},
		},
		"mtls": {
			native: true, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 40,
			args: []string{"--cert-dir=/etc/moat/tls", "--cacert=/etc/moat/client-ca/bundle.pem", "--allow-cn=checkout", "--allow-ou=payments",
				"--allow-dns=checkout.shop.svc.cluster.local", "--allow-uri=spiffe://cluster.local/ns/shop/sa/checkout", "--allow-uri=spiffe://cluster.local/ns/payments/sa/*"},
			notArgs: []string{"--disable-authentication"},
		},
		"plain-container": {
			native: false, secretName: "rel-moat-tls", listenPort: 8443, statusPort: 9090, grace: 30,
			args: []string{"--shutdown-delay=5s", "--shutdown-timeout=20s"},
		},
		"cert-manager": {
			native: true, secretName: "edge-moat-tls", listenPort: 8443, statusPort: 9090, grace: 40,
			args: []string{"--cert-dir=/etc/moat/tls"},
		},
		"self-signed": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 45,
			args:    []string{"--self-signed", "--disable-authentication"},
			notArgs: []string{"--cert-dir=/etc/moat/tls"},
		},
		"self-signed-mtls": {
			native: true, listenPort: 8443, statusPort: 9090, grace: 40,
			args:    []string{"--self-signed", "--cacert=/etc/moat/client-ca/ca.crt", "--allow-uri=spiffe://cluster.local/ns/shop/sa/checkout"},
			notArgs: []string{"--cert-dir", "--disable-authentication"},
		},
		"all-flags": {
			native: true, secretName: "rel-moat-tls", listenPort: 9443, statusPort: 9100, grace: 73,
			args: []string{"--listen=:9443", "--status=:9100", "--target=unix:/run/app/app.sock", "--handshake-timeout=5s", "--idle-timeout=30m",
				"--connect-timeout=2s", "--max-concurrent-conns=1000000", "--max-concurrent-handshakes=0", "--max-handshake-rate=200", "--allow-all", "--proxy-protocol=v2", "--alpn=h2,http/1.1",
				"--enable-pprof", "--log-format=console", "--log-level=debug", "--shutdown-delay=3s", "--shutdown-timeout=60s"},
		},
		"library": {
			native: true, secretName: "shop-tls", listenPort: 8443, statusPort: 9090, grace: 60, lastInit: true,
			args:    []string{"--target=127.0.0.1:5000", "--allow-dns=checkout.shop.svc.cluster.local"},
			notArgs: []string{"--disable-authentication"},
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

	// Image: the chart's appVersion.
	if wantImage := "ghcr.io/moat-proxy/moat:" + chartAppVersion(t); c.Image != wantImage {
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
		if !strings.HasPrefix(name, "--allow-") && seen[name] {
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

func TestStandaloneResources(t *testing.T) {
	r := render(t, valueSetNamed(t, "defaults"))
	d := r.deployments()[0]
	if d.Name != "rel-moat" {
		t.Errorf("Deployment %s, want rel-moat", d.Name)
	}
	// The example app is the main container, behind moat.
	if len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Name != "app" {
		t.Errorf("containers %v, want the example app only", d.Spec.Template.Spec.Containers)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9090" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v, want Prometheus scrape annotations for :9090/metrics", ann)
	}
	svcs := r.services()
	if len(svcs) != 1 || len(svcs[0].Spec.Ports) != 1 || svcs[0].Spec.Ports[0].Port != 443 {
		t.Fatalf("want one Service with only port 443, got %+v", svcs)
	}
	if len(r.all("Certificate")) != 0 || len(r.all("ServiceMonitor")) != 0 {
		t.Error("Certificate or ServiceMonitor rendered by default")
	}

	// The helm test hook pod connects through the Service with the Secret's CA.
	pods := r.pods()
	if len(pods) != 1 {
		t.Fatalf("want 1 test pod, got %d", len(pods))
	}
	p := pods[0]
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test pod hook annotation %q, want test", p.Annotations["helm.sh/hook"])
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test pod restartPolicy %s, want Never", p.Spec.RestartPolicy)
	}
	script := strings.Join(p.Spec.Containers[0].Args, "\n")
	for _, s := range []string{"https://rel-moat.default.svc:443/", "--cacert /etc/moat-test/ca/ca.crt", "--fail"} {
		if !strings.Contains(script, s) {
			t.Errorf("test script lacks %q:\n%s", s, script)
		}
	}
	if p.Spec.Volumes[0].Secret == nil || p.Spec.Volumes[0].Secret.SecretName != "rel-moat-tls" {
		t.Errorf("test pod does not mount ca.crt of rel-moat-tls: %+v", p.Spec.Volumes)
	}
}

func TestMTLSTestPodUsesClientCertificate(t *testing.T) {
	r := render(t, valueSetNamed(t, "mtls"))
	p := r.pods()[0]
	script := strings.Join(p.Spec.Containers[0].Args, "\n")
	if !strings.Contains(script, "--cert /etc/moat-test/client/tls.crt --key /etc/moat-test/client/tls.key") {
		t.Errorf("mTLS test pod does not present the client certificate:\n%s", script)
	}
	found := false
	for _, v := range p.Spec.Volumes {
		found = found || (v.Secret != nil && v.Secret.SecretName == "checkout-client-tls")
	}
	if !found {
		t.Errorf("test pod does not mount checkout-client-tls: %+v", p.Spec.Volumes)
	}
	// The client CA Secret is mounted for --cacert.
	d := r.deployments()[0]
	var vol *corev1.Volume
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "clients-ca" {
			vol = &d.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatal("no volume for the clients-ca Secret")
	}

	// Without a client certificate for the test, the test checks refusal.
	v := valueSetNamed(t, "mtls")
	v.args = append(v.args, "--set", "test.clientSecretName=")
	script = strings.Join(render(t, v).pods()[0].Spec.Containers[0].Args, "\n")
	if !strings.Contains(script, "moat accepted a client without a certificate") {
		t.Errorf("mTLS test without a client certificate does not check refusal:\n%s", script)
	}
}

func TestCertManagerAndServiceMonitor(t *testing.T) {
	r := render(t, valueSetNamed(t, "cert-manager"))
	certs := r.all("Certificate")
	if len(certs) != 1 {
		t.Fatalf("want 1 Certificate, got %d", len(certs))
	}
	cert := certs[0].obj.(*cmv1.Certificate)
	if cert.Spec.SecretName != "edge-moat-tls" {
		t.Errorf("Certificate writes %q, moat mounts edge-moat-tls", cert.Spec.SecretName)
	}
	if cert.Spec.IssuerRef.Name != "cluster-ca" || cert.Spec.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("issuerRef %+v", cert.Spec.IssuerRef)
	}
	for _, n := range []string{"edge-moat", "edge-moat.ingress.svc", "edge-moat.ingress.svc.cluster.local", "moat.example.com"} {
		if !slices.Contains(cert.Spec.DNSNames, n) {
			t.Errorf("dnsNames %v lack %s", cert.Spec.DNSNames, n)
		}
	}
	if !slices.Contains(cert.Spec.Usages, cmv1.UsageServerAuth) || !slices.Contains(cert.Spec.Usages, cmv1.UsageClientAuth) {
		t.Errorf("usages %v, want server auth and client auth", cert.Spec.Usages)
	}
	if cert.Spec.PrivateKey == nil || cert.Spec.PrivateKey.RotationPolicy != cmv1.RotationPolicyAlways {
		t.Errorf("privateKey %+v, want rotationPolicy Always", cert.Spec.PrivateKey)
	}

	sms := r.all("ServiceMonitor")
	if len(sms) != 1 {
		t.Fatalf("want 1 ServiceMonitor, got %d", len(sms))
	}
	sm := sms[0].obj.(*monv1.ServiceMonitor)
	svc := r.services()[0]
	if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selects %v, Service labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack release=kube-prometheus-stack", sm.Labels)
	}
	var metricsPort *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Name == sm.Spec.Endpoints[0].Port {
			metricsPort = &svc.Spec.Ports[i]
		}
	}
	if metricsPort == nil || metricsPort.TargetPort.IntVal != 9090 || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %+v does not reach :9090/metrics through Service ports %+v", sm.Spec.Endpoints[0], svc.Spec.Ports)
	}
	if ann := r.deployments()[0].Spec.Template.Annotations; ann["prometheus.io/scrape"] != "" {
		t.Errorf("metrics.podAnnotations=false, but pod annotations are %v", ann)
	}
}

func TestLibraryUseRendersOnlyTheParentsResources(t *testing.T) {
	r := render(t, valueSetNamed(t, "library"))
	var names []string
	for _, o := range r.objs {
		names = append(names, o.kind+"/"+o.name)
	}
	slices.Sort(names)
	if want := []string{"Deployment/shop-app", "Service/shop-app"}; !slices.Equal(names, want) {
		t.Errorf("library use rendered %v, want only the parent's %v", names, want)
	}
	spec := r.deployments()[0].Spec.Template.Spec
	// The parent's own init container, container and volume are kept.
	if spec.InitContainers[0].Name != "migrate" || spec.Containers[0].Name != "app" || spec.Volumes[0].Name != "cache" {
		t.Errorf("parent's pod spec not kept: init %v, containers %v, volumes %v", spec.InitContainers, spec.Containers, spec.Volumes)
	}
	if ann := r.deployments()[0].Spec.Template.Annotations; ann["prometheus.io/port"] != "9090" {
		t.Errorf("moat.podAnnotations not rendered in the parent: %v", ann)
	}
}

// TestRefusedValues: wrong values fail at render (and so install) time.
func TestRefusedValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v       valueSet
		wantErr string
	}{
		{"port not a number", valueSet{args: []string{"--set", "listen.port=abc"}}, "/listen/port"},
		{"port out of range", valueSet{args: []string{"--set", "status.port=70000"}}, "/status/port"},
		{"misspelt key", valueSet{args: []string{"--set", "tsl.secretName=x"}}, "additional properties 'tsl' not allowed"},
		{"misspelt nested key", valueSet{args: []string{"--set", "mtls.allowCn[0]=x"}}, "allowCn"},
		{"bad duration", valueSet{args: []string{"--set", "timeouts.idle=1hour"}}, "/timeouts/idle"},
		{"unknown log format", valueSet{args: []string{"--set", "log.format=xml"}}, "/log/format"},
		{"proxy protocol v3", valueSet{args: []string{"--set", "proxyProtocol=v3"}}, "/proxyProtocol"},
		{"mtls without allow rules", valueSet{args: []string{"--set", "mtls.enabled=true"}}, "/mtls"},
		{"comma in an allow entry", valueSet{args: []string{"--set", "mtls.enabled=true", "--set-json", `mtls.allowOU=["Acme, Inc"]`}}, "/mtls/allowOU/0"},
		{"cert-manager without issuer", valueSet{args: []string{"--set", "certManager.enabled=true"}}, "/certManager/issuerRef/name"},
		{"grace shorter than shutdown", valueSet{args: []string{"--set", "terminationGracePeriodSeconds=20"}}, "needs more than shutdown.delaySeconds + shutdown.timeoutSeconds = 30 seconds"},
		{"grace shorter than shutdown with delay", valueSet{args: []string{"--set", "shutdown.delaySeconds=15", "--set", "terminationGracePeriodSeconds=45"}}, "= 45 seconds"},
		{"misspelt key under moat: in a parent chart", valueSet{chart: parentChart, args: []string{"--set", "moat.tagret=127.0.0.1:1"}}, "additional properties 'tagret' not allowed"},
		{"parent pod grace too short", valueSet{chart: parentChart, args: []string{"--set", "moat.shutdown.timeoutSeconds=120"}}, "the pod spec's terminationGracePeriodSeconds is 60"},
		{"native sidecar on 1.28", valueSet{kubeVersion: "1.28.9"}, "nativeSidecar needs Kubernetes 1.29"},
		{"service monitor without the example", valueSet{args: []string{"--set", "example.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"}}, "metrics.serviceMonitor selects the standalone Service"},
		{"cert-manager and self-signed", valueSet{args: []string{"--set", "certManager.enabled=true", "--set", "certManager.issuerRef.name=x", "--set", "tls.selfSigned=true"}}, "exclude each other"},
		{"mtls allowAll with allow lists", valueSet{args: []string{"--set", "mtls.enabled=true", "--set", "mtls.allowAll=true", "--set", "mtls.allowCN[0]=a"}}, "cannot be combined"},
		{"mtls self-signed without client CA", valueSet{args: []string{"--set", "tls.selfSigned=true", "--set", "mtls.enabled=true", "--set", "mtls.allowCN[0]=a"}}, "needs mtls.clientCA.secretName"},
		{"bad secret name", valueSet{args: []string{"--set", "tls.secretName=My_Secret"}}, "/tls/secretName"},
		{"target outside the pod", valueSet{args: []string{"--set", "target=10.0.0.5:8080"}}, "target 10.0.0.5:8080 is not a loopback address, localhost or a unix socket, so the plaintext would leave the pod; set unsafeTarget=true"},
		{"host name target", valueSet{args: []string{"--set", "target=db.internal:5432"}}, "set unsafeTarget=true"},
		{"target outside the pod in a parent chart", valueSet{chart: parentChart, args: []string{"--set", "moat.target=0.0.0.0:5000"}}, "set unsafeTarget=true"},
		{"unsafeTarget not a boolean", valueSet{args: []string{"--set", "unsafeTarget=yes"}}, "/unsafeTarget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.v.name, tc.v.release = tc.name, "rel"
			out, err := tc.v.template(t)
			if err == nil {
				t.Fatalf("rendered without error:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error does not mention %q:\n%v", tc.wantErr, err)
			}
		})
	}
}
