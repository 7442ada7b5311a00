package telemetry

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

var alertsPath = filepath.Join("..", "deployments", "prometheus", "alerts.yml")

// TestAlertRules: the shipped alerting rules load in Prometheus (promtool
// check rules), fire and stay quiet as alerts.test.yml says (promtool test
// rules: Prometheus' own rule engine over series a faulty relay exports),
// and name only metrics the relay exports.
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	exported := exportedNames(t)
	alerts := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			alerts++
			names := promMetricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !exported[n] && !synthetic[n] {
					t.Errorf("%s: %s is not exported by the relay (in %q)", r.Alert, n, r.Expr)
				}
			}
		}
	}
	if alerts < 10 {
		t.Fatalf("%d alerts; want the full set", alerts)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is required in CI (Debian package prometheus; make test installs it)")
		}
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	dir := filepath.Dir(alertsPath)
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
