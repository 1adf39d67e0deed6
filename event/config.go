package event

import (
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultMinExpires       = 60 * time.Second
	DefaultMaxExpires       = 24 * time.Hour
	DefaultMinInterval      = 5 * time.Second
	DefaultMaxSubscriptions = 200000
	DefaultMaxPending       = 10000
	// DefaultNotifyTimeout is longer than a NOTIFY transaction can last
	// (Timer F, 64×T1 = 32 s), so it fires only when a Sender never
	// reports the outcome: the subscription then ends rather than wait
	// forever.
	DefaultNotifyTimeout = 40 * time.Second
)

// Config is the "events" section of the server's YAML file.
//
//	events:
//	  min_expires: 60s
//	  max_expires: 24h
//	  min_notify_interval: 5s
//	  max_subscriptions: 200000
//	  max_pending: 10000
//	  notify_timeout: 40s
type Config struct {
	// MinExpires is the shortest subscription granted: a SUBSCRIBE asking
	// for less (but not 0) gets 423 Interval Too Brief with Min-Expires
	// (RFC 6665 §4.2.1.1). Default 60s.
	MinExpires time.Duration `yaml:"min_expires"`
	// MaxExpires is the longest: longer requests are granted this much.
	// Default 24h.
	MaxExpires time.Duration `yaml:"max_expires"`
	// MinInterval is the rate limit of RFC 6665 §4.1.2.1: at most one
	// NOTIFY per interval per subscription follows state changes,
	// carrying the latest state (a burst of changes is coalesced). The
	// NOTIFYs answering a SUBSCRIBE and the final one are not held back.
	// Default 5s.
	MinInterval time.Duration `yaml:"min_notify_interval"`
	// MaxSubscriptions bounds the subscriptions held; a new SUBSCRIBE
	// beyond gets 503 with Retry-After. Default 200000.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxPending bounds the NOTIFY transactions in flight. Due
	// subscriptions beyond it wait in order, each at most once with its
	// latest state: nothing is dropped, and the wait holds no message.
	// Default 10000.
	MaxPending int `yaml:"max_pending"`
	// NotifyTimeout ends a subscription whose NOTIFY got no outcome from
	// the Sender in this time. A NOTIFY answered 481, 408 (and the other
	// codes RFC 5057 says end a usage), timing out or failing in the
	// transport ends the subscription at once (RFC 6665 §4.2.2). Default
	// 40s.
	NotifyTimeout time.Duration `yaml:"notify_timeout"`
}

func (c Config) withDefaults() Config {
	if c.MinExpires == 0 {
		c.MinExpires = DefaultMinExpires
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = DefaultMaxExpires
	}
	if c.MinInterval == 0 {
		c.MinInterval = DefaultMinInterval
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.NotifyTimeout == 0 {
		c.NotifyTimeout = DefaultNotifyTimeout
	}
	return c
}

// Validate checks a Config with its defaults applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MinExpires < time.Second:
		return fmt.Errorf("event: min_expires %v: want at least 1s", c.MinExpires)
	case c.MaxExpires < c.MinExpires:
		return fmt.Errorf("event: max_expires %v is below min_expires %v", c.MaxExpires, c.MinExpires)
	case c.MaxExpires > (1<<32-1)*time.Second:
		return fmt.Errorf("event: max_expires %v: too long", c.MaxExpires)
	case c.MinInterval < 0:
		return fmt.Errorf("event: min_notify_interval %v: negative", c.MinInterval)
	case c.MaxSubscriptions < 0:
		return fmt.Errorf("event: max_subscriptions %d: negative", c.MaxSubscriptions)
	case c.MaxPending < 0:
		return fmt.Errorf("event: max_pending %d: negative", c.MaxPending)
	case c.NotifyTimeout < 0:
		return fmt.Errorf("event: notify_timeout %v: negative", c.NotifyTimeout)
	}
	return nil
}
