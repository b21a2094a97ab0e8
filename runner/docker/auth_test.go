package docker

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigAuth(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	// A credential helper as `docker login` would configure one.
	helper := "#!/bin/sh\nread server\ncase $server in\n  gcr.io) echo '{\"Username\": \"_json_key\", \"Secret\": \"from-helper\"}';;\n  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-fake"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	b64 := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	config := `{
		"auths": {
			"https://index.docker.io/v1/": {"auth": "` + b64 + `"},
			"ghcr.io": {"username": "bob", "password": "pat"},
			"https://registry.example.com/v2/": {"auth": "` + b64 + `"}
		},
		"credHelpers": {"gcr.io": "fake", "quay.io": "fake"}
	}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DOCKER_CONFIG": dir}
	auth := ConfigAuth(func(k string) string { return env[k] })
	cases := []struct{ ref, user, pass string }{
		{"python:3.12", "alice", "s3cret"},
		{"docker.io/library/busybox", "alice", "s3cret"},
		{"ghcr.io/acme/train:v1", "bob", "pat"},
		{"registry.example.com/team/img", "alice", "s3cret"},
		{"gcr.io/proj/img@sha256:" + strings.Repeat("a", 64), "_json_key", "from-helper"},
		{"quay.io/nobody/img", "", ""},      // the helper has none: anonymous
		{"unknown.example.org/img", "", ""}, // not configured: anonymous
	}
	for _, c := range cases {
		a, err := auth(context.Background(), c.ref)
		if err != nil {
			t.Errorf("%s: %v", c.ref, err)
			continue
		}
		user, pass := "", ""
		if a != nil {
			user, pass = a.Username, a.Password
		}
		if user != c.user || pass != c.pass {
			t.Errorf("%s: %q/%q, want %q/%q", c.ref, user, pass, c.user, c.pass)
		}
	}
	// No config file: anonymous, no error.
	none := ConfigAuth(func(k string) string { return map[string]string{"DOCKER_CONFIG": t.TempDir()}[k] })
	if a, err := none(context.Background(), "python:3.12"); a != nil || err != nil {
		t.Errorf("without a config: %v, %v", a, err)
	}
	// A broken config is an error that names the file.
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o600)
	if _, err := auth(context.Background(), "python:3.12"); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("broken config: %v", err)
	}
}
