// Package imageref names the exact image a reference points to by asking its
// registry, with no Docker daemon and no pull: python:3.12 or
// ghcr.io/org/train:v2 becomes name@sha256:..., the repository digest the
// Docker daemon records (RepoDigests) when it pulls the same reference. For a
// multi-platform image that is the digest of its index, not of one
// platform's manifest, so the same tag names the same digest on every host.
//
// Reuse keys on that digest (runner.ImageResolver): executors with no daemon
// on the host running sluice (Cloud Batch, Kubernetes) use a Resolver, and the
// Docker executor asks one before pulling an image it does not have.
package imageref

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors a lookup wraps, for callers that branch on why it failed.
var (
	// ErrNotFound: the registry has no such repository or tag.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the registry refused the request (401 or 403), for
	// want of credentials or because they do not grant pulling the image.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnreachable: the registry could not be reached (DNS, connection, TLS).
	ErrUnreachable = errors.New("unreachable")
)

// dockerConfigHint says where the default keychain finds credentials.
const dockerConfigHint = "sluice reads registry credentials from the Docker config ($DOCKER_CONFIG/config.json, else ~/.docker/config.json) and its credential helpers"

// Options configure a Resolver; the zero value is usable.
type Options struct {
	// Keychain finds a registry's credentials; nil means
	// authn.DefaultKeychain: the Docker config ($DOCKER_CONFIG/config.json,
	// else ~/.docker/config.json), its credsStore and credHelpers, as
	// `docker login` leaves them. A registry with none is asked anonymously.
	Keychain authn.Keychain
	// Transport carries the requests; nil means remote.DefaultTransport
	// (which honours HTTPS_PROXY and NO_PROXY).
	Transport http.RoundTripper
	// Logger receives a debug message per lookup; nil discards them.
	Logger *slog.Logger
}

// Resolver looks image digests up in their registries. It is safe for
// concurrent use.
type Resolver struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	log       *slog.Logger
	credsHint string
}

// New returns a Resolver.
func New(opts Options) *Resolver {
	r := &Resolver{keychain: opts.Keychain, transport: opts.Transport, log: opts.Logger}
	if r.keychain == nil {
		r.keychain, r.credsHint = authn.DefaultKeychain, dockerConfigHint
	}
	if r.transport == nil {
		r.transport = remote.DefaultTransport
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Pinned returns ref as name@digest when it already names a digest
// (busybox@sha256:..., or busybox:1.36@sha256:..., whose tag Docker ignores),
// with the name in Docker's familiar form. ok is false for a reference
// without a digest; err is set for one that is not a valid reference.
func Pinned(ref string) (pinned string, ok bool, err error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", false, fmt.Errorf("image %q: %w", ref, err)
	}
	if d, isDigested := named.(reference.Digested); isDigested {
		return reference.FamiliarName(named) + "@" + d.Digest().String(), true, nil
	}
	return "", false, nil
}

// ImageDigest returns the repository digest ref points to now, as
// name@sha256:..., with the name as Docker writes it in RepoDigests:
// busybox, not index.docker.io/library/busybox:latest. A reference that
// already names a digest is returned in that form without asking the
// registry. It implements runner.ImageResolver.
//
// A tag is asked for with one HEAD request (a GET when the registry's answer
// to HEAD carries no digest); pulls are not counted against Docker Hub's
// limits for HEAD. Errors wrap ErrNotFound, ErrUnauthorized, ErrUnreachable,
// or ctx's error.
func (r *Resolver) ImageDigest(ctx context.Context, ref string) (string, error) {
	if pinned, ok, err := Pinned(ref); err != nil || ok {
		return pinned, err
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	named = reference.TagNameOnly(named)
	// Docker's normal form (docker.io/library/busybox:latest) parses the same
	// way here; docker.io becomes index.docker.io, where Docker Hub answers.
	tag, err := name.ParseReference(named.String())
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	registry := tag.Context().RegistryStr()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.keychain),
		remote.WithTransport(r.transport),
		remote.WithUserAgent("sluice"),
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil && ctx.Err() == nil && headUnusable(err) {
		// Some registries answer HEAD without Docker-Content-Digest: the
		// digest of the manifest's bytes is the same thing.
		var got *remote.Descriptor
		if got, err = remote.Get(tag, opts...); err == nil {
			desc = &got.Descriptor
		}
	}
	if err != nil {
		return "", r.explain(ctx, ref, registry, err)
	}
	if desc.Digest.Algorithm != "sha256" {
		return "", fmt.Errorf("image %s: registry %s names it by a %s digest, not sha256", ref, registry, desc.Digest.Algorithm)
	}
	out := reference.FamiliarName(named) + "@" + desc.Digest.String()
	r.log.Debug("image digest from the registry", "image", ref, "digest", out, "media_type", string(desc.MediaType))
	return out, nil
}

// headUnusable reports whether a HEAD failed in a way a GET may not: the
// registry answered, but not with a usable digest (no header, or HEAD not
// allowed).
func headUnusable(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode == http.StatusMethodNotAllowed
	}
	return !isNetwork(err)
}

func isNetwork(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

// explain turns a failed lookup into an error that says what to do about it.
func (r *Resolver) explain(ctx context.Context, ref, registry string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("image %s: registry %s: %w", ref, registry, ctxErr)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		detail := diagnostics(te)
		switch {
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return fmt.Errorf("image %s: registry %s: %w%s", ref, registry, ErrNotFound, detail)
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			hint := "give sluice credentials that may pull it"
			if r.credsHint != "" {
				hint = r.credsHint + ": run `" + loginCommand(registry) + "`"
			}
			return fmt.Errorf("image %s: registry %s: %w%s; %s, or check the image's name (some registries answer so for an image that does not exist)",
				ref, registry, ErrUnauthorized, detail, hint)
		}
		return fmt.Errorf("image %s: registry %s: %w", ref, registry, err)
	}
	if isNetwork(err) {
		return fmt.Errorf("image %s: registry %s: %w: %w", ref, registry, ErrUnreachable, err)
	}
	return fmt.Errorf("image %s: registry %s: %w", ref, registry, err)
}

// diagnostics is a registry error's status and codes, as
// " (404 Not Found: MANIFEST_UNKNOWN: manifest unknown)".
func diagnostics(te *transport.Error) string {
	s := fmt.Sprintf(" (%d %s", te.StatusCode, http.StatusText(te.StatusCode))
	for i, d := range te.Errors {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		s += sep + string(d.Code)
		if d.Message != "" {
			s += ": " + d.Message
		}
	}
	return s + ")"
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// loginCommand is how to store a registry's credentials where the default
// keychain finds them (Docker Hub is docker login's default).
func loginCommand(registry string) string {
	if registry == name.DefaultRegistry {
		return "docker login"
	}
	return "docker login " + registry
}
