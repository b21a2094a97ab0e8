package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// KubernetesVersion is the release of kube-apiserver, kube-controller-manager
// and kube-scheduler that testdata/k8s/build.sh builds, and the key of its
// cache directory.
const KubernetesVersion = "v1.37.2"

// buildScript is what makes the binaries, for the message when they are missing.
const buildScript = "testdata/k8s/build.sh"

// components are the binaries Start runs, as build.sh names them.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// CacheDir is where testdata/k8s/build.sh puts the binaries:
// $SLUICE_K8S_CACHE/<version>, by default ~/.cache/sluice/k8s/<version>.
func CacheDir(getenv func(string) string) (string, error) {
	root := getenv("SLUICE_K8S_CACHE")
	if root == "" {
		home := getenv("HOME")
		if home == "" {
			var err error
			if home, err = os.UserHomeDir(); err != nil {
				return "", fmt.Errorf("kubetest: neither SLUICE_K8S_CACHE nor HOME is set: %w", err)
			}
		}
		root = filepath.Join(home, ".cache", "sluice", "k8s")
	}
	return filepath.Join(root, KubernetesVersion), nil
}

// findBinaries returns the path of each component in dir, or an error that
// says how to build them. A directory without build.sh's stamp is an
// unfinished build, and as good as none.
func findBinaries(dir string) (map[string]string, error) {
	hint := fmt.Sprintf("run %s (it builds the control plane from the Go module proxy: 17 to 23 minutes cold, nothing when up to date)", buildScript)
	if _, err := os.Stat(filepath.Join(dir, ".stamp")); err != nil {
		return nil, fmt.Errorf("kubetest: no Kubernetes %s control plane in %s: %s", KubernetesVersion, dir, hint)
	}
	paths := make(map[string]string, len(components))
	for _, name := range components {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("kubetest: %s is missing from %s: %s", name, dir, hint)
		}
		paths[name] = p
	}
	return paths, nil
}
