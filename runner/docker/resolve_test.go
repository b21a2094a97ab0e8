package docker

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// fakeRegistry stands in for imageref.Resolver: it names every image
// registry@sha256:reg, or fails with err.
type fakeRegistry struct {
	err   error
	asked []string
}

func (f *fakeRegistry) ImageDigest(ctx context.Context, ref string) (string, error) {
	f.asked = append(f.asked, ref)
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if f.err != nil {
		return "", f.err
	}
	return "repo@sha256:reg", nil
}

func TestImageDigestAsksTheRegistryBeforePulling(t *testing.T) {
	unreachable := errors.New("registry unreachable")
	for _, tc := range []struct {
		name        string
		policy      PullPolicy
		have        bool
		registryErr error
		noRegistry  bool
		want        string
		wantErr     error
		wantAsked   int
		wantPulls   int
	}{
		{name: "the host has it", policy: PullMissing, have: true, want: "repo@sha256:def"},
		{name: "the host lacks it", policy: PullMissing, want: "repo@sha256:reg", wantAsked: 1},
		{name: "the registry cannot say", policy: PullMissing, registryErr: unreachable, want: "repo@sha256:def", wantAsked: 1, wantPulls: 1},
		{name: "no registry", policy: PullMissing, noRegistry: true, want: "repo@sha256:def", wantPulls: 1},
		{name: "always", policy: PullAlways, have: true, want: "repo@sha256:reg", wantAsked: 1},
		{name: "always, the registry cannot say", policy: PullAlways, have: true, registryErr: unreachable, want: "repo@sha256:def", wantAsked: 1, wantPulls: 1},
		{name: "never, the host has it", policy: PullNever, have: true, want: "repo@sha256:def"},
		{name: "never, the host lacks it", policy: PullNever, wantErr: ErrImageNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &imageClient{have: tc.have}
			reg := &fakeRegistry{err: tc.registryErr}
			opts := Options{Pull: tc.policy, Registry: reg}
			if tc.noRegistry {
				opts.Registry = nil
			}
			e, err := New(fake, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.ImageDigest(context.Background(), "repo:tag")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("digest %q, want %q", got, tc.want)
			}
			if len(reg.asked) != tc.wantAsked || len(fake.pulls) != tc.wantPulls {
				t.Errorf("registry asked %d times, %d pulls; want %d, %d", len(reg.asked), len(fake.pulls), tc.wantAsked, tc.wantPulls)
			}
		})
	}
}

func TestImageDigestCancelledDoesNotPull(t *testing.T) {
	fake := &imageClient{}
	e, _ := New(fake, Options{Registry: &fakeRegistry{}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.ImageDigest(ctx, "repo:tag"); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if len(fake.pulls) != 0 {
		t.Errorf("%d pulls after the context was cancelled", len(fake.pulls))
	}
}

// namesClient is a Docker host that knows one image under several names.
type namesClient struct {
	client.APIClient
}

func (namesClient) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: "sha256:abc", RepoDigests: []string{
		"mirror.example/library/busybox@sha256:111", "busybox@sha256:111", "ghcr.io/org/train@sha256:111",
	}}, nil
}

func TestImageDigestNamesTheReferencesRepository(t *testing.T) {
	e, _ := New(namesClient{}, Options{Pull: PullNever})
	for ref, want := range map[string]string{
		"busybox":                       "busybox@sha256:111",
		"docker.io/library/busybox:1.0": "busybox@sha256:111",
		"ghcr.io/org/train:v1":          "ghcr.io/org/train@sha256:111",
		"other:1":                       "mirror.example/library/busybox@sha256:111",
	} {
		got, err := e.ImageDigest(context.Background(), ref)
		if err != nil || got != want {
			t.Errorf("ImageDigest(%s) = %q, %v; want %q", ref, got, err, want)
		}
	}
}
