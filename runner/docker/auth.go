package docker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
)

// dockerHubServer is the key Docker's config uses for Docker Hub.
const dockerHubServer = "https://index.docker.io/v1/"

// ConfigAuth returns a RegistryAuthFunc that reads the credentials `docker
// login` stored: the Docker config file ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json), its per-registry credential helpers (credHelpers),
// its default helper (credsStore) and its inline auths, in Docker's order. A
// registry with no credentials is pulled anonymously; a missing config file
// means no credentials at all. getenv is os.Getenv in production.
func ConfigAuth(getenv func(string) string) RegistryAuthFunc {
	return func(ctx context.Context, ref string) (*registry.AuthConfig, error) {
		cfg, path, err := readDockerConfig(getenv)
		if err != nil || cfg == nil {
			return nil, err
		}
		server, err := registryServer(ref)
		if err != nil {
			return nil, err
		}
		if helper := cfg.CredHelpers[server]; helper != "" {
			return credentialHelper(ctx, helper, server)
		}
		if a, ok := lookupAuths(cfg.Auths, server); ok {
			return a.toAuthConfig(server, path)
		}
		if cfg.CredsStore != "" {
			return credentialHelper(ctx, cfg.CredsStore, server)
		}
		return nil, nil
	}
}

type dockerConfig struct {
	Auths       map[string]dockerAuth `json:"auths"`
	CredsStore  string                `json:"credsStore"`
	CredHelpers map[string]string     `json:"credHelpers"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

func readDockerConfig(getenv func(string) string) (*dockerConfig, string, error) {
	dir := getenv("DOCKER_CONFIG")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return nil, "", nil
		}
		dir = filepath.Join(home, ".docker")
	}
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("read the Docker config: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, path, fmt.Errorf("the Docker config %s is not valid JSON: %w", path, err)
	}
	return &cfg, path, nil
}

// registryServer is the key under which Docker stores a registry's credentials.
func registryServer(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	domain := reference.Domain(named)
	if domain == "docker.io" || domain == "index.docker.io" {
		return dockerHubServer, nil
	}
	return domain, nil
}

// lookupAuths finds a registry in the auths map, whose keys may carry a scheme or a path.
func lookupAuths(auths map[string]dockerAuth, server string) (dockerAuth, bool) {
	if a, ok := auths[server]; ok {
		return a, true
	}
	for key, a := range auths {
		host := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		if host == server || server == dockerHubServer && (host == "index.docker.io" || host == "docker.io") {
			return a, true
		}
	}
	return dockerAuth{}, false
}

func (a dockerAuth) toAuthConfig(server, path string) (*registry.AuthConfig, error) {
	out := &registry.AuthConfig{ServerAddress: server, Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("the credentials for %s in %s are not valid base64", server, path)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, fmt.Errorf("the credentials for %s in %s are not user:password", server, path)
		}
		out.Username, out.Password = user, pass
	}
	return out, nil
}

// credentialHelper asks docker-credential-<helper> for a registry's credentials.
func credentialHelper(ctx context.Context, helper, server string) (*registry.AuthConfig, error) {
	cmd := exec.CommandContext(ctx, "docker-credential-"+helper, "get")
	cmd.Stdin = strings.NewReader(server)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String() + " " + errb.String())
		if strings.Contains(msg, "credentials not found") {
			return nil, nil
		}
		return nil, fmt.Errorf("credential helper docker-credential-%s for %s: %v: %s", helper, server, err, msg)
	}
	var creds struct {
		Username string `json:"Username"`
		Secret   string `json:"Secret"`
	}
	if err := json.Unmarshal(out.Bytes(), &creds); err != nil {
		return nil, fmt.Errorf("credential helper docker-credential-%s for %s: unreadable answer", helper, server)
	}
	a := &registry.AuthConfig{ServerAddress: server}
	if creds.Username == "<token>" {
		a.IdentityToken = creds.Secret
	} else {
		a.Username, a.Password = creds.Username, creds.Secret
	}
	return a, nil
}
