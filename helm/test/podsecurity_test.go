package charttest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// restricted evaluates the Pod Security "restricted" level, at the newest
// version this module knows, on one pod spec with the same code the API
// server's admission plugin runs; it returns the failed checks as
// "reason: detail" lines.
func restricted(t *testing.T, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, r := range eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, meta, spec) {
		if !r.Allowed {
			failed = append(failed, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return failed
}

// restrictedExceptions are the value sets that cannot pass "restricted" by
// the user's own choice, with the one violation each must have and no
// other: workloadAPI.volume=hostPath mounts the SPIRE agent's socket
// directory from the node, a hostPath volume (the csi.spiffe.io default
// passes).
var restrictedExceptions = map[string]string{
	"workload-api-hostpath": `restricted volume types: volume "moat-workload-api" uses restricted volume type "hostPath"`,
}

// TestPodSecurityRestricted: every pod the chart renders, in every value
// set (the Deployments' pod templates and the helm test pods, standalone
// and library use), passes Pod Security "restricted", but for the
// exceptions above.
func TestPodSecurityRestricted(t *testing.T) {
	for _, v := range valueSets() {
		t.Run(v.name, func(t *testing.T) {
			r := render(t, v)
			pods := map[string]*corev1.PodTemplateSpec{}
			for _, d := range r.deployments() {
				pods["Deployment "+d.Name] = &d.Spec.Template
			}
			for _, p := range r.pods() {
				pods["Pod "+p.Name] = &corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
			}
			if len(pods) == 0 {
				t.Fatal("no pod rendered")
			}
			for name, pod := range pods {
				failed := restricted(t, &pod.ObjectMeta, &pod.Spec)
				if want, ok := restrictedExceptions[v.name]; ok && strings.HasPrefix(name, "Deployment ") {
					if len(failed) != 1 || failed[0] != want {
						t.Errorf("%s: violations %q, want exactly %q", name, failed, want)
					}
					continue
				}
				if len(failed) > 0 {
					t.Errorf("%s violates Pod Security restricted:\n  %s", name, strings.Join(failed, "\n  "))
				}
			}
		})
	}
}

// TestPodSecurityEvaluatorRefuses: the evaluation above is not vacuous: the
// default pod with moat's hardening undone, one setting at a time, fails
// restricted and names the setting.
func TestPodSecurityEvaluatorRefuses(t *testing.T) {
	yes, no := true, false
	var root int64
	for _, tc := range []struct {
		name   string
		undo   func(c *corev1.Container)
		reason string
	}{
		{"privilege escalation", func(c *corev1.Container) { c.SecurityContext.AllowPrivilegeEscalation = &yes }, "allowPrivilegeEscalation"},
		{"capabilities kept", func(c *corev1.Container) { c.SecurityContext.Capabilities = nil }, "unrestricted capabilities"},
		{"may run as root", func(c *corev1.Container) { c.SecurityContext.RunAsNonRoot = &no }, "runAsNonRoot"},
		{"runs as uid 0", func(c *corev1.Container) { c.SecurityContext.RunAsUser = &root }, "runAsUser=0"},
		{"unconfined seccomp", func(c *corev1.Container) {
			c.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, "seccompProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := render(t, valueSetNamed(t, "defaults")).deployments()[0]
			spec := d.Spec.Template.Spec.DeepCopy()
			c, _, _, err := moatContainer(*spec)
			if err != nil {
				t.Fatal(err)
			}
			// moatContainer returns a pointer into its own copy: change
			// the one in spec.
			for i := range spec.InitContainers {
				if spec.InitContainers[i].Name == c.Name {
					tc.undo(&spec.InitContainers[i])
				}
			}
			failed := restricted(t, &d.Spec.Template.ObjectMeta, spec)
			if !strings.Contains(strings.Join(failed, "\n"), tc.reason) {
				t.Fatalf("failed checks %q, want one naming %q", failed, tc.reason)
			}
		})
	}
}
