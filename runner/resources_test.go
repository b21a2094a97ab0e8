package runner

import (
	"context"
	"testing"
)

// A step's resources reach the executor: the maxima as limits, the minima
// as requests (for a scheduler that reserves them), the GPU count.
func TestStepResourcesReachTheJob(t *testing.T) {
	var got Resources
	f := &fakeExec{behave: func(ctx context.Context, job Job) (Result, error) {
		got = job.Resources
		return succeed(ctx, job, 0, "", nil)
	}}
	yaml := `- step:
    name: s
    image: x
    command: run
    resources:
      cpu: {min: 0.5, max: 2}
      memory: {min: 256, max: 1024}
      devices: {nvidia.com/gpu: 1}
- pipeline:
    name: p
    nodes:
      - {name: train, type: execution, step: s}
    edges: []
`
	if _, err := runPipeline(t, yaml, f, nil, 1); err != nil {
		t.Fatal(err)
	}
	want := Resources{CPU: 2, MemoryMB: 1024, GPUs: 1, CPURequest: 0.5, MemoryRequestMB: 256}
	if got != want {
		t.Errorf("resources %+v, want %+v", got, want)
	}
}
