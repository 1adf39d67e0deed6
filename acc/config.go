package acc

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config.
const (
	// DefaultMaxDuration ends a call whose BYE never came.
	DefaultMaxDuration = 4 * time.Hour
	// DefaultMaxCalls bounds the calls tracked at once.
	DefaultMaxCalls = 100000
	// DefaultQueueSize bounds the records waiting for their commit.
	DefaultQueueSize = 8192
	// DefaultPurgeInterval is how often expired records are deleted when
	// Retention is set: often enough that the table holds at most an
	// hour beyond the retention, rarely enough to cost nothing.
	DefaultPurgeInterval = time.Hour
	// MinRetention is the shortest Retention accepted. Records are read
	// for billing and disputes days later; a retention under an hour is
	// far more likely a slip of the unit ("retention: 30m" for 30 days)
	// than a wish to delete calls as soon as they end.
	MinRetention = time.Hour
)

// Config is the "accounting" section of the server's YAML file.
//
//	accounting:
//	  enabled: true
//	  max_duration: 4h
//	  messages: true
//	  failed_registers: true
//	  retention: 2160h   # 90 days
type Config struct {
	// Enabled turns accounting on. Default true.
	Enabled *bool `yaml:"enabled"`
	// MaxDuration ends an answered call that has seen no BYE this long
	// after its answer (ended_by proxy, end_reason max-duration).
	// Default 4h.
	MaxDuration time.Duration `yaml:"max_duration"`
	// Messages records every MESSAGE the proxy forwards. Default off.
	Messages bool `yaml:"messages"`
	// FailedRegisters records REGISTERs answered >= 300, except the
	// 401/407 challenge to one without credentials. Default off.
	FailedRegisters bool `yaml:"failed_registers"`
	// MaxCalls bounds the calls tracked at once; calls beyond it are not
	// recorded (hlas_acc_dropped_total{reason="limit"}). Default 100000.
	MaxCalls int `yaml:"max_calls"`
	// QueueSize bounds the records waiting for their commit. Default 8192.
	QueueSize int `yaml:"queue_size"`
	// Retention is how long records are kept after they completed (their
	// end, see store.CDR.Completed), so the table does not grow forever:
	// older ones are deleted when accounting starts and then every
	// PurgeInterval (hlas_acc_purged_total). 0, the default, keeps them
	// forever; otherwise at least MinRetention.
	Retention time.Duration `yaml:"retention"`
	// PurgeInterval is how often records older than Retention are
	// deleted. Default 1h.
	PurgeInterval time.Duration `yaml:"purge_interval"`
}

// On reports whether accounting is enabled.
func (c Config) On() bool { return c.Enabled == nil || *c.Enabled }

func (c Config) withDefaults() Config {
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultMaxDuration
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = DefaultPurgeInterval
	}
	return c
}

// Validate checks the values and names the offending field.
func (c Config) Validate() error {
	if c.MaxDuration < 0 {
		return errors.New("accounting max_duration: must not be negative")
	}
	if c.MaxCalls < 0 || c.QueueSize < 0 {
		return errors.New("accounting max_calls, queue_size: must not be negative")
	}
	if c.Retention < 0 {
		return errors.New("accounting retention: must not be negative (0 keeps records forever)")
	}
	if c.Retention > 0 && c.Retention < MinRetention {
		return fmt.Errorf("accounting retention: %v is under the minimum %v (0 keeps records forever)", c.Retention, MinRetention)
	}
	if c.PurgeInterval < 0 {
		return errors.New("accounting purge_interval: must not be negative")
	}
	return nil
}
