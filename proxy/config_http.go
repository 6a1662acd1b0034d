package proxy

import (
	"fmt"
	"time"

	"github.com/qgate/qgate/proxy/queue"
)

// Values of Config.HTTPAuth.
const (
	HTTPAuthAPI = "api" // with users configured, /api needs Basic auth; /metrics, /healthz and /readyz are open
	HTTPAuthAll = "all" // every endpoint needs Basic auth (any configured user for /metrics and the probes)
)

// Defaults of the observability settings.
const (
	DefaultMetricsMaxQueues      = queue.DefaultMetricsMaxQueues
	DefaultMetricsSampleInterval = 5 * time.Second
)

// validateHTTP checks the HTTP listener's settings.
func (c Config) validateHTTP() []error {
	var errs []error
	if c.HTTP != "" {
		if err := checkHostPort(c.HTTP); err != nil {
			errs = append(errs, fmt.Errorf("http: %v", err))
		}
	}
	switch c.HTTPAuth {
	case "", HTTPAuthAPI, HTTPAuthAll:
	default:
		errs = append(errs, fmt.Errorf("http_auth: must be api or all, got %q", c.HTTPAuth))
	}
	if c.MetricsMaxQueues < 0 {
		errs = append(errs, fmt.Errorf("metrics_max_queues: must be >= 0 (0 = %d), got %d", DefaultMetricsMaxQueues, c.MetricsMaxQueues))
	}
	if c.MetricsSampleInterval != 0 && c.MetricsSampleInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("metrics_sample_interval: must be >= 100ms (0 = %s), got %s", DefaultMetricsSampleInterval, c.MetricsSampleInterval))
	}
	return errs
}

// metricsMaxQueues is MetricsMaxQueues with its default.
func (c Config) metricsMaxQueues() int {
	if c.MetricsMaxQueues == 0 {
		return DefaultMetricsMaxQueues
	}
	return c.MetricsMaxQueues
}

// metricsSampleInterval is MetricsSampleInterval with its default.
func (c Config) metricsSampleInterval() time.Duration {
	if c.MetricsSampleInterval == 0 {
		return DefaultMetricsSampleInterval
	}
	return c.MetricsSampleInterval
}
