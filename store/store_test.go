package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/store"
	"github.com/sluice-ci/sluice/store/file"
)

func TestValidateKey(t *testing.T) {
	valid := []string{"a", "a/b/c.txt", "..a", "a..", ".hidden", "a/.sluice", "ü/日本", "with space", "#?*[]",
		strings.Repeat("x", store.MaxSegmentLen), strings.Repeat("x/", store.MaxKeyLen/2-1) + "xx"}
	for _, k := range valid {
		if err := store.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	invalid := map[string]string{
		"":                                     "empty",
		"/a":                                   "begins with /",
		"a/":                                   "ends with /",
		"a//b":                                 "empty segment",
		"..":                                   `".." segment`,
		"a/../b":                               `".." segment`,
		"./a":                                  `"." segment`,
		`a\b`:                                  "backslash",
		"a\x00":                                "U+0000",
		"a\nb":                                 "U+000A",
		"\xff":                                 "UTF-8",
		strings.Repeat("x", store.MaxKeyLen+1): "longer than 1024",
		strings.Repeat("x", store.MaxSegmentLen+1):         "segment longer",
		"a/.sluice-tmp-1":                                  "reserved",
		strings.Repeat("x/", store.MaxKeyLen/2) + "x":      "longer than 1024",
		"ok/" + strings.Repeat("y", store.MaxSegmentLen+1): "segment longer",
	}
	for k, reason := range invalid {
		err := store.ValidateKey(k)
		var ke *store.KeyError
		if !errors.Is(err, store.ErrInvalidKey) || !errors.As(err, &ke) || ke.Key != k {
			t.Errorf("ValidateKey(%q) = %v, want a *KeyError for it", k, err)
			continue
		}
		if !strings.Contains(err.Error(), reason) || !strings.Contains(err.Error(), fmt.Sprintf("%q", k)) {
			t.Errorf("ValidateKey(%q) = %q, want the quoted key and %q", k, err, reason)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"", "a", "a/", "a/b", "a/.", "a/..", "a/.sluice"} {
		if err := store.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"/", "/a", "a//", "a\n", `a\`, ".sluice-", "x/.sluice-t"} {
		if err := store.ValidatePrefix(p); !errors.Is(err, store.ErrInvalidKey) || !strings.Contains(err.Error(), fmt.Sprintf("%q", p)) {
			t.Errorf("ValidatePrefix(%q) = %v, want an invalid key error naming it", p, err)
		}
	}
}

func TestDigest(t *testing.T) {
	const hello = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	d := store.DigestOf([]byte("hello"))
	if d.String() != hello {
		t.Fatalf("DigestOf(hello) = %s, want %s", d, hello)
	}
	p, err := store.ParseDigest(hello)
	if err != nil || p != d {
		t.Fatalf("ParseDigest(%s) = %s, %v", hello, p, err)
	}
	if got, want := store.BlobKey(d), "blobs/sha256/2c/"+hello[len("sha256:"):]; got != want {
		t.Errorf("BlobKey = %s, want %s", got, want)
	}
	if err := store.ValidateKey(store.BlobKey(d)); err != nil {
		t.Error(err)
	}
	var zero store.Digest
	if !zero.IsZero() || zero.String() != "" || store.BlobKey(zero) != "" || d.IsZero() {
		t.Errorf("zero digest: IsZero %v, String %q, BlobKey %q", zero.IsZero(), zero, store.BlobKey(zero))
	}

	for _, bad := range []string{
		"", "sha256:", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		"sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		"sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
		"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",
		"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98244",
		"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982g",
	} {
		if _, err := store.ParseDigest(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseDigest(%q) = %v, want an error naming it", bad, err)
		}
	}

	type record struct {
		Digest store.Digest `json:"digest"`
		None   store.Digest `json:"none"`
	}
	b, err := json.Marshal(record{Digest: d})
	if err != nil || string(b) != `{"digest":"`+hello+`","none":""}` {
		t.Fatalf("json.Marshal = %s, %v", b, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.Digest != d || !r.None.IsZero() {
		t.Fatalf("json.Unmarshal = %+v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(`{"digest":"sha256:xyz"}`), &r); err == nil {
		t.Error("json.Unmarshal of a bad digest succeeded")
	}
}

func TestUpdate(t *testing.T) {
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	appendX := func(old []byte, exists bool) ([]byte, error) {
		if !exists && old != nil {
			return nil, errors.New("missing object with content")
		}
		return append(old, 'x'), nil
	}
	for range 3 {
		if _, err := store.Update(ctx, s, "ref", appendX); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Stat(ctx, "ref")
	if err != nil || info.Size != 3 {
		t.Fatalf("after 3 updates: %+v, %v, want size 3", info, err)
	}

	errStop := errors.New("stop")
	if _, err := store.Update(ctx, s, "ref", func([]byte, bool) ([]byte, error) { return nil, errStop }); !errors.Is(err, errStop) {
		t.Errorf("Update with a failing fn: %v, want its error", err)
	}
	if again, _ := s.Stat(ctx, "ref"); again.Generation != info.Generation {
		t.Errorf("failing fn wrote: generation %d, was %d", again.Generation, info.Generation)
	}

	big := strings.NewReader(strings.Repeat("x", 16<<20+1))
	if _, err := s.Put(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	_, err = store.Update(ctx, s, "big", appendX)
	if err == nil || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("Update of an object over 16 MiB: %v, want an error naming it", err)
	}
	if _, err := store.Update(ctx, s, "../bad", appendX); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("Update of an invalid key: %v, want store.ErrInvalidKey", err)
	}
}
