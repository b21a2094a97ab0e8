package spec

import "time"

// BackendBatch runs each node execution as a Google Cloud Batch job: a VM
// per step, GPUs, spot provisioning with recovery.
const BackendBatch = "batch"

// Provisioning models of a Batch environment.
const (
	ProvisioningSpot     = "spot"
	ProvisioningStandard = "standard"
)

// BatchEnvironment holds the settings of `backend: batch`:
//
//	environments:
//	  gpu-l4:
//	    backend: batch
//	    project: my-project
//	    region: us-central1
//	    zones: [us-central1-a, us-central1-c]   # allowed zones, in order (default: any zone of the region)
//	    machine-type: g2-standard-8
//	    accelerator: {type: nvidia-l4, count: 1}
//	    boot-disk-gb: 100
//	    boot-image: batch-cos                   # optional
//	    provisioning: spot                      # spot (default) or standard
//	    spot-fallback-after: 2                  # preemptions before the node moves to standard VMs
//	    retries: 3                              # preemptions (and lost VMs) retried per node
//	    queue-timeout: 15m                      # how long a job may wait for capacity
//	    fallback:                               # tried in order when capacity runs out
//	      - {machine-type: a2-highgpu-1g, accelerator: {type: nvidia-tesla-a100, count: 1}}
//	    service-account: runner@my-project.iam.gserviceaccount.com
//	    network: projects/my-project/global/networks/default
//	    subnetwork: projects/my-project/regions/us-central1/subnetworks/default
//	    no-external-ip: true
//	    labels: {team: ml}
//	    max-run-duration: 6h
//	    hourly-price: 0.85                      # USD per VM hour, for the cost estimate and max-cost
//	    image: ghcr.io/sluice-ci/sluice:v1      # the sluice image of the agent's first runnable
type BatchEnvironment struct {
	Project string
	Region  string
	// Zones are the allowed zones, in order of preference; empty means any
	// zone of Region.
	Zones []string
	// Machine is the first choice of machine; Fallback the next ones, in
	// order, when Batch has no capacity for the one before.
	Machine  BatchMachine
	Fallback []BatchMachine
	// BootDiskGB is the boot disk's size (0: Batch's default); BootImage
	// its image (empty: Batch's default).
	BootDiskGB int
	BootImage  string
	// Provisioning is ProvisioningSpot (the default) or ProvisioningStandard.
	Provisioning string
	// SpotFallbackAfter is how many preemptions a node takes on spot VMs
	// before it moves to standard ones; 0 means it stays on spot.
	SpotFallbackAfter int
	// Retries is how many times a preempted node (or one whose VM stopped
	// reporting) is tried again; preemptions never count as the step's
	// failure. Default 3.
	Retries int
	// QueueTimeout is how long a job may wait in QUEUED or SCHEDULED for a
	// VM before the next fallback is tried. Default 15 minutes.
	QueueTimeout time.Duration
	// ServiceAccount is the VM's service account (empty: the project's
	// default compute service account).
	ServiceAccount string
	Network        string
	Subnetwork     string
	NoExternalIP   bool
	Labels         map[string]string
	// MaxRunDuration bounds a job's run (Batch's maxRunDuration): a VM
	// never outlives it, even when sluice is killed. Default 24 hours.
	MaxRunDuration time.Duration
	// HourlyPrice is the price of one VM hour in USD, for the cost estimate;
	// nil when not given.
	HourlyPrice *float64
	// Image is the sluice image of the agent's first runnable; empty means
	// the image of this sluice's version.
	Image string
}

// BatchMachine is a machine type with its GPUs.
type BatchMachine struct {
	MachineType string
	// Accelerator is the GPU type (Compute Engine's name, such as
	// nvidia-l4); empty for none.
	Accelerator      string
	AcceleratorCount int
}
