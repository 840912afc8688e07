package browserpool

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// fullJitter is capped exponential backoff with full jitter: the n-th wait
// (n from 0) is uniform in [0, min(max, initial·2^n)]. The capped exponential
// ceiling is cenkalti/backoff's ExponentialBackOff without randomization;
// fullJitter draws the wait below it. Full jitter spreads the reconnects of
// many proxies (or many browsers behind one gateway) that lost their
// browsers at the same moment, instead of bunching them around each step.
// It is not safe for concurrent use; each Browser's run loop owns one.
type fullJitter struct {
	ceiling *backoff.ExponentialBackOff
	rand    func() float64 // uniform in [0, 1)
}

var _ backoff.BackOff = (*fullJitter)(nil)

// newFullJitter returns full-jitter backoff from initial, doubling up to max.
func newFullJitter(initial, max time.Duration) *fullJitter {
	exp := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         max,
	}
	exp.Reset()
	return &fullJitter{ceiling: exp, rand: rand.Float64}
}

// NextBackOff implements backoff.BackOff: a wait uniform in [0, ceiling],
// after which the ceiling doubles (up to its cap).
func (j *fullJitter) NextBackOff() time.Duration {
	c := j.ceiling.NextBackOff()
	return time.Duration(j.rand() * float64(c+1))
}

// Reset implements backoff.BackOff: the next ceiling is the initial interval.
func (j *fullJitter) Reset() { j.ceiling.Reset() }
