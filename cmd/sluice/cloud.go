package main

import (
	"context"
	"fmt"
	"sync"

	"cloud.google.com/go/auth/credentials"
	batchapi "cloud.google.com/go/batch/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-ci/sluice/runner/kube"
	"github.com/sluice-ci/sluice/spec"
)

// BatchEmulatorEnv names a Cloud Batch stand-in (host:port, plain gRPC, no
// credentials) that sluice talks to instead of batch.googleapis.com, as
// STORAGE_EMULATOR_HOST does for Cloud Storage.
const BatchEmulatorEnv = "SLUICE_BATCH_EMULATOR_HOST"

// cloudClients makes the cloud API clients of one sluice command once, when
// an environment first needs them.
type cloudClients struct {
	getenv func(string) string

	batchOnce sync.Once
	batch     *batchapi.Client
	batchErr  error

	kubeMu sync.Mutex
	kubes  map[kubeKey]*kubeClient
}

// kubeKey is what makes one cluster's client: the kubeconfig and context,
// or the pod's service account.
type kubeKey struct {
	kubeconfig, context string
	inCluster           bool
}

type kubeClient struct {
	client  kubernetes.Interface
	cluster string
	err     error
}

// Kube returns the client of a kubernetes environment's cluster and the
// cluster's name (its context, or the API server's host in-cluster): one
// per kubeconfig and context, made when an environment first needs it.
func (c *cloudClients) Kube(env spec.KubeEnvironment) (kubernetes.Interface, string, error) {
	key := kubeKey{env.Kubeconfig, env.Context, env.InCluster}
	c.kubeMu.Lock()
	defer c.kubeMu.Unlock()
	if k, ok := c.kubes[key]; ok {
		return k.client, k.cluster, k.err
	}
	k := &kubeClient{}
	cfg, cluster, err := kube.Connect(env, c.getenv)
	if err == nil {
		k.client, err = kubernetes.NewForConfig(cfg)
	}
	k.cluster, k.err = cluster, err
	if c.kubes == nil {
		c.kubes = map[kubeKey]*kubeClient{}
	}
	c.kubes[key] = k
	return k.client, k.cluster, k.err
}

// Batch returns the Cloud Batch client: Application Default Credentials
// (a service-account key in GOOGLE_APPLICATION_CREDENTIALS, the metadata
// server, Workload Identity Federation), or the emulator BatchEmulatorEnv
// names.
func (c *cloudClients) Batch(ctx context.Context) (*batchapi.Client, error) {
	c.batchOnce.Do(func() {
		var opts []option.ClientOption
		if host := c.getenv(BatchEmulatorEnv); host != "" {
			opts = append(opts, option.WithEndpoint(host), option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		} else {
			// The client would look for credentials only at its first call,
			// after the run began: look now, so that a run without them
			// stops before any node starts.
			creds, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: batchapi.DefaultAuthScopes()})
			if err != nil {
				c.batchErr = fmt.Errorf("cloud batch: no Google Cloud credentials (%v); give Application Default Credentials: "+
					"google-github-actions/auth in GitHub Actions (Workload Identity Federation), "+
					"GOOGLE_APPLICATION_CREDENTIALS naming a credentials file, or `gcloud auth application-default login`", err)
				return
			}
			opts = append(opts, option.WithAuthCredentials(creds))
		}
		c.batch, c.batchErr = batchapi.NewClient(ctx, opts...)
		if c.batchErr != nil {
			c.batchErr = fmt.Errorf("cloud batch client: %w", c.batchErr)
		}
	})
	return c.batch, c.batchErr
}

// Close closes the clients that were made.
func (c *cloudClients) Close() {
	if c.batch != nil {
		_ = c.batch.Close()
	}
}
