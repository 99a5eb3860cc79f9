package charttest

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// mountAt returns the mount of volume name in c, or nil.
func mountAt(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volumeNamed(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func containerNamed(spec corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

// TestUnixSocketTargetSharesTheSocketDirectory: with a unix:/path target
// moat and the app (library use, socketVolume.containers) mount one
// in-memory volume at the socket's directory; the standalone chart mounts
// it in moat. The app named in appPreStop.containers sleeps in preStop.
func TestUnixSocketTargetSharesTheSocketDirectory(t *testing.T) {
	for _, name := range []string{"library-unix-socket", "all-flags"} {
		t.Run(name, func(t *testing.T) {
			spec := render(t, valueSetNamed(t, name)).deployments()[0].Spec.Template.Spec
			vol := volumeNamed(spec, "moat-socket")
			if vol == nil || vol.EmptyDir == nil || vol.EmptyDir.Medium != corev1.StorageMediumMemory {
				t.Fatalf("socket volume %+v, want an in-memory emptyDir", vol)
			}
			moat, _, _, err := moatContainer(spec)
			if err != nil {
				t.Fatal(err)
			}
			if m := mountAt(moat, "moat-socket"); m == nil || m.MountPath != "/run/app" || m.ReadOnly {
				t.Errorf("moat's socket mount %+v, want /run/app read-write", m)
			}
			if name != "library-unix-socket" {
				return
			}
			app := containerNamed(spec, "app")
			if m := mountAt(app, "moat-socket"); m == nil || m.MountPath != "/run/app" {
				t.Errorf("app's socket mount %+v, want /run/app", m)
			}
			if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Sleep == nil || app.Lifecycle.PreStop.Sleep.Seconds != 3 {
				t.Errorf("app lifecycle %+v, want preStop sleep 3", app.Lifecycle)
			}
		})
	}
}

// TestStandaloneAppSleepsInPreStop: the example app keeps serving for
// example.preStopSleepSeconds after the pod is deleted (Kubernetes 1.30+),
// and not on older clusters, where the field does not exist.
func TestStandaloneAppSleepsInPreStop(t *testing.T) {
	spec := render(t, valueSetNamed(t, "defaults")).deployments()[0].Spec.Template.Spec
	app := containerNamed(spec, "app")
	if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Sleep == nil || app.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("app lifecycle %+v, want preStop sleep 5", app.Lifecycle)
	}
	old := render(t, valueSetNamed(t, "plain-container")).deployments()[0].Spec.Template.Spec
	if app := containerNamed(old, "app"); app.Lifecycle != nil {
		t.Errorf("on 1.27 the app has lifecycle %+v, want none", app.Lifecycle)
	}
}

// TestOptionalPolicies: the NetworkPolicy lets in only moat's TLS port (and
// the status port from the monitoring namespace); the PodMonitor scrapes
// moat-status; the PrometheusRule alerts on the certificate's expiry; pull
// secrets, the registry mirror, extra volumes and the termination message
// policy reach the pod.
func TestOptionalPolicies(t *testing.T) {
	r := render(t, valueSetNamed(t, "policies"))
	nps := r.all("NetworkPolicy")
	if len(nps) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(nps))
	}
	np := nps[0].obj.(*networkingv1.NetworkPolicy)
	if len(np.Spec.Ingress) != 2 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 8443 || np.Spec.Ingress[1].Ports[0].Port.IntValue() != 9090 {
		t.Errorf("ingress %+v, want the TLS port then the status port", np.Spec.Ingress)
	}
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/instance"] != "rel" {
		t.Errorf("pod selector %v, want the standalone pods", np.Spec.PodSelector.MatchLabels)
	}
	pms := r.all("PodMonitor")
	if len(pms) != 1 {
		t.Fatalf("%d PodMonitors, want 1", len(pms))
	}
	pm := pms[0].obj.(*monv1.PodMonitor)
	if ep := pm.Spec.PodMetricsEndpoints; len(ep) != 1 || ep[0].Port == nil || *ep[0].Port != "moat-status" || pm.Labels["release"] != "prometheus" {
		t.Errorf("PodMonitor %+v", pm.Spec)
	}
	rules := r.all("PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(rules))
	}
	pr := rules[0].obj.(*monv1.PrometheusRule)
	var alerts []string
	for _, rule := range pr.Spec.Groups[0].Rules {
		alerts = append(alerts, rule.Alert)
		expr := rule.Expr.String()
		if !strings.Contains(expr, `moat_certificate_expiry_timestamp_seconds{namespace="shop"}`) || !strings.Contains(expr, "time()") {
			t.Errorf("%s: expr %q", rule.Alert, expr)
		}
	}
	if !slices.Equal(alerts, []string{"MoatCertificateExpiresSoon", "MoatCertificateExpiryCritical"}) {
		t.Errorf("alerts %v", alerts)
	}
	if e := pr.Spec.Groups[0].Rules[0].Expr.String(); !strings.HasSuffix(e, "< 604800") {
		t.Errorf("warning expr %q, want 7 days", e)
	}

	spec := r.deployments()[0].Spec.Template.Spec
	var secrets []string
	for _, s := range spec.ImagePullSecrets {
		secrets = append(secrets, s.Name)
	}
	if !slices.Equal(secrets, []string{"regcred", "mirror-cred"}) {
		t.Errorf("imagePullSecrets %v", secrets)
	}
	moat, _, _, err := moatContainer(spec)
	if err != nil {
		t.Fatal(err)
	}
	if moat.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("terminationMessagePolicy %q", moat.TerminationMessagePolicy)
	}
	if m := mountAt(moat, "crl"); m == nil || m.MountPath != "/etc/moat/crl" || volumeNamed(spec, "crl") == nil {
		t.Errorf("extra volume mount %+v", m)
	}
}

// TestLibraryPolicies: the moat subchart renders the NetworkPolicy and
// PodMonitor for the parent's pods from their podSelector.
func TestLibraryPolicies(t *testing.T) {
	r := render(t, valueSetNamed(t, "library-unix-socket"))
	for _, o := range append(r.all("NetworkPolicy"), r.all("PodMonitor")...) {
		var sel map[string]string
		switch x := o.obj.(type) {
		case *networkingv1.NetworkPolicy:
			sel = x.Spec.PodSelector.MatchLabels
		case *monv1.PodMonitor:
			sel = x.Spec.Selector.MatchLabels
		}
		if len(sel) != 1 || sel["app"] != "shop-app" {
			t.Errorf("%s selects %v, want app=shop-app", o.kind, sel)
		}
	}
	if len(r.all("NetworkPolicy")) != 1 || len(r.all("PodMonitor")) != 1 {
		t.Errorf("want one NetworkPolicy and one PodMonitor")
	}
}
