package charttest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kubeVersion is the cluster version the chart is rendered for unless a value
// set says otherwise (helm template alone pretends v1.20.0).
const kubeVersion = "1.31.0"

var (
	moatChart = filepath.Join("..", "moat")
	repoRoot  = filepath.Join("..", "..")
	// parentChart is testdata/parent with the moat chart copied into its
	// charts/ directory, prepared by TestMain.
	parentChart string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	parentChart = filepath.Join(dir, "parent")
	if err := copyDir(filepath.Join("testdata", "parent"), parentChart); err == nil {
		err = copyDir(moatChart, filepath.Join(parentChart, "charts", "moat"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the parent chart:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// helmBin is the helm binary: $HELM, or helm on PATH.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	p, err := exec.LookPath("helm")
	if err != nil {
		t.Fatal("no helm: put it on PATH or set HELM (scripts/ci-helm.sh installs a pinned one)")
	}
	return p
}

// runHelm runs helm and returns stdout, or an error carrying stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// valueSet is one way of rendering a chart.
type valueSet struct {
	name        string
	chart       string // moatChart, or parentChart (library use)
	release     string
	namespace   string
	kubeVersion string
	args        []string // -f and --set
}

func (v valueSet) chartPath() string {
	if v.chart == "" {
		return moatChart
	}
	return v.chart
}

func (v valueSet) helmArgs() []string {
	kv := v.kubeVersion
	if kv == "" {
		kv = kubeVersion
	}
	return append([]string{"--kube-version", kv}, v.args...)
}

// template renders the value set with `helm template` (tests included).
func (v valueSet) template(t *testing.T) (string, error) {
	t.Helper()
	ns := v.namespace
	if ns == "" {
		ns = "default"
	}
	args := append([]string{"template", v.release, v.chartPath(), "--namespace", ns}, v.helmArgs()...)
	return runHelm(t, args...)
}

// lint runs `helm lint --strict` for the value set.
func (v valueSet) lint(t *testing.T) error {
	t.Helper()
	args := append([]string{"lint", "--strict", v.chartPath()}, v.helmArgs()...)
	_, err := runHelm(t, args...)
	return err
}

// object is one rendered manifest, decoded.
type object struct {
	apiVersion, kind, name string
	doc                    string
	obj                    any
}

// newTyped returns a pointer to the Go type for apiVersion/kind. Every kind
// the chart (or the test parent chart) renders must be listed here: an
// unknown kind fails the test rather than going unchecked.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/Pod":
		return &corev1.Pod{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "cert-manager.io/v1/Certificate":
		return &cmv1.Certificate{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monv1.PodMonitor{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monv1.PrometheusRule{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("no Go type registered for apiVersion %q kind %q", apiVersion, kind)
}

// decodeStrict decodes one YAML manifest into its API type; unknown and
// duplicate fields are errors.
func decodeStrict(doc []byte) (object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return object{}, fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	typed, err := newTyped(head.APIVersion, head.Kind)
	if err != nil {
		return object{}, err
	}
	// YAML to JSON refusing duplicate keys, then the decoding the API server
	// uses: case-sensitive field names (encoding/json would take "secretname"
	// for "secretName"), unknown fields reported.
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("%s %q: %w", head.Kind, head.Metadata.Name, err)
	}
	strictErrs, err := kjson.UnmarshalStrict(data, typed, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil {
		err = errors.Join(strictErrs...)
	}
	if err != nil {
		return object{}, fmt.Errorf("%s %q: %w", head.Kind, head.Metadata.Name, err)
	}
	return object{apiVersion: head.APIVersion, kind: head.Kind, name: head.Metadata.Name, doc: string(doc), obj: typed}, nil
}

// decodeAll splits `helm template` output into manifests and decodes each
// strictly.
func decodeAll(out string) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs []object
	var errs []error
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if onlyComments(doc) {
			continue
		}
		o, err := decodeStrict(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w\n--- manifest ---\n%s", err, doc))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

func onlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// rendered is a value set's decoded output.
type rendered struct {
	objs []object
}

func (r rendered) all(kind string) []object {
	var out []object
	for _, o := range r.objs {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) deployments() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, o := range r.all("Deployment") {
		out = append(out, o.obj.(*appsv1.Deployment))
	}
	return out
}

func (r rendered) services() []*corev1.Service {
	var out []*corev1.Service
	for _, o := range r.all("Service") {
		out = append(out, o.obj.(*corev1.Service))
	}
	return out
}

func (r rendered) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range r.all("Pod") {
		out = append(out, o.obj.(*corev1.Pod))
	}
	return out
}

// render templates and decodes a value set, failing the test on any error.
func render(t *testing.T, v valueSet) rendered {
	t.Helper()
	out, err := v.template(t)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("strict decoding of %s:\n%v", v.name, err)
	}
	if len(objs) == 0 {
		t.Fatalf("%s rendered no manifests", v.name)
	}
	return rendered{objs: objs}
}

// moatContainer finds the moat container of a pod spec: whether it is an
// init container (native sidecar), and its index in its list.
func moatContainer(spec corev1.PodSpec) (c *corev1.Container, native bool, index int, err error) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "moat" {
			c, native, index = &spec.InitContainers[i], true, i
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == "moat" {
			if c != nil {
				return nil, false, 0, errors.New("moat is both an init container and a container")
			}
			c, native, index = &spec.Containers[i], false, i
		}
	}
	if c == nil {
		return nil, false, 0, errors.New("no container named moat")
	}
	return c, native, index, nil
}

// moatArgs returns the moat container args of every pod spec in the output.
func (r rendered) moatArgs() ([][]string, error) {
	var out [][]string
	for _, d := range r.deployments() {
		c, _, _, err := moatContainer(d.Spec.Template.Spec)
		if err != nil {
			return nil, fmt.Errorf("Deployment %s: %w", d.Name, err)
		}
		out = append(out, c.Args)
	}
	return out, nil
}
