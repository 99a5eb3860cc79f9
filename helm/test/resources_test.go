package charttest

import (
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

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
		{"workload API and self-signed", valueSet{args: []string{"--set", "workloadAPI.enabled=true", "--set", "tls.selfSigned=true"}}, "cannot be combined with tls.selfSigned"},
		{"workload API volume unknown", valueSet{args: []string{"--set", "workloadAPI.volume=emptyDir"}}, "/workloadAPI/volume"},
		{"unsafeTarget not a boolean", valueSet{args: []string{"--set", "unsafeTarget=yes"}}, "/unsafeTarget"},
		{"listen and status on one port", valueSet{args: []string{"--set", "status.port=8443"}}, "listen.port and status.port are both 8443"},
		{"listen on the app's port", valueSet{args: []string{"--set", "listen.port=8080"}}, `listen.port 8080 is also a port of container "app"`},
		{"status on the app's port", valueSet{args: []string{"--set", "example.port=9090", "--set", "target=127.0.0.1:9090"}}, `status.port 9090 is also a port of container "app"`},
		{"status on the parent app's port", valueSet{chart: parentChart, args: []string{"--set", "moat.status.port=5000"}}, `status.port 5000 is also a port of container "app"`},
		{"empty image tag", valueSet{args: []string{"--set", "image.tag="}}, "/image/tag"},
		{"socket containers without a unix target", valueSet{chart: parentChart, args: []string{"--set", "moat.socketVolume.containers[0]=app"}}, "target is not a unix:/path socket"},
		{"preStop for a container that is not there", valueSet{chart: parentChart, args: []string{"--set", "moat.appPreStop.containers[0]=web"}}, `names "web", which is not a container`},
		{"preStop sleep on 1.29", valueSet{chart: parentChart, kubeVersion: "1.29.4", args: []string{"--set", "moat.appPreStop.containers[0]=app"}}, "needs Kubernetes 1.30"},
		{"pod monitor for nobody", valueSet{args: []string{"--set", "example.enabled=false", "--set", "metrics.podMonitor.enabled=true"}}, "metrics.podMonitor.podSelector is needed"},
		{"kubernetes older than the chart", valueSet{kubeVersion: "1.24.0", args: []string{"--set", "nativeSidecar=false"}}, "kubeVersion"},
		{"crl without mtls", valueSet{args: []string{"--set", "mtls.crl.configMap=crls"}}, "mtls.crl needs mtls.enabled"},
		{"crl from both a ConfigMap and a Secret", valueSet{args: []string{"--set", "mtls.enabled=true", "--set", "mtls.allowAll=true",
			"--set", "mtls.crl.configMap=crls", "--set", "mtls.crl.secretName=crls"}}, "not both"},
		{"crl-expired neither warn nor refuse", valueSet{args: []string{"--set", "mtls.crl.expired=ignore"}}, "/mtls/crl/expired"},
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

// TestWorkloadAPIVolume checks the Workload API socket's volume: the SPIFFE
// CSI driver or a node directory, mounted read-only where
// --use-workload-api-addr points.
func TestWorkloadAPIVolume(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want func(corev1.Volume) bool
	}{
		{"workload-api", func(v corev1.Volume) bool {
			return v.CSI != nil && v.CSI.Driver == "csi.spiffe.io" && v.CSI.ReadOnly != nil && *v.CSI.ReadOnly
		}},
		{"workload-api-hostpath", func(v corev1.Volume) bool {
			return v.HostPath != nil && v.HostPath.Path == "/run/spire/sockets" &&
				v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectory
		}},
	} {
		t.Run(tc.set, func(t *testing.T) {
			deps := render(t, valueSetNamed(t, tc.set)).deployments()
			if len(deps) != 1 {
				t.Fatalf("want 1 Deployment, got %d", len(deps))
			}
			spec := deps[0].Spec.Template.Spec
			c, _, _, err := moatContainer(spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/spiffe-workload-api" || !c.VolumeMounts[0].ReadOnly {
				t.Fatalf("moat mounts %+v, want only the Workload API directory at /spiffe-workload-api, read-only", c.VolumeMounts)
			}
			for _, v := range spec.Volumes {
				if v.Name == c.VolumeMounts[0].Name {
					if !tc.want(v) {
						t.Fatalf("volume %+v", v.VolumeSource)
					}
					return
				}
			}
			t.Fatalf("no volume %s", c.VolumeMounts[0].Name)
		})
	}
}
