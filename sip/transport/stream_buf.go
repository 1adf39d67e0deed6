package transport

import "sync"

// streamBufs recycles the read buffers of a Manager's stream connections:
// a connection takes one when a message does not fit its small buffer and
// gives it back once the message is framed, so buffers are held by
// messages in flight, not by idle connections. The zero value is ready;
// a nil *streamBufs allocates and forgets.
type streamBufs struct{ pool sync.Pool }

func (p *streamBufs) get() *[readBufSize]byte {
	if p != nil {
		if b, ok := p.pool.Get().(*[readBufSize]byte); ok {
			return b
		}
	}
	return new([readBufSize]byte)
}

func (p *streamBufs) put(b *[readBufSize]byte) {
	if p != nil {
		p.pool.Put(b)
	}
}
