package browserpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/chromedp"
)

// pipeConn is a chromedp.Transport over the pipes of a Chromium started
// with --remote-debugging-pipe: Chromium reads NUL-terminated JSON messages
// on its fd 3 and writes them on its fd 4. No TCP port is opened, so no
// page and no local user can reach this browser's DevTools.
type pipeConn struct {
	r  *bufio.Reader
	w  *os.File // Chromium's fd 3
	rf *os.File // Chromium's fd 4
	// onClose stops the process: a pipe connection cannot be opened again,
	// so the process lives exactly as long as its connection.
	onClose func()

	wmu       sync.Mutex // one writer at a time
	closeOnce sync.Once
}

var _ chromedp.Transport = (*pipeConn)(nil)

// Read reads the next CDP message, at most maxMessage bytes.
func (c *pipeConn) Read(_ context.Context, msg *cdproto.Message) error {
	var data []byte
	for {
		chunk, err := c.r.ReadSlice(0)
		if len(data)+len(chunk) > maxMessage {
			return fmt.Errorf("the browser sent a CDP message larger than %d bytes", maxMessage)
		}
		data = append(data, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	data = data[:len(data)-1] // the NUL
	*msg = cdproto.Message{}
	return jsonv2.Unmarshal(data, msg, chromedp.DefaultUnmarshalOptions)
}

// Write sends one CDP message and its NUL, bounded by writeTimeout.
func (c *pipeConn) Write(_ context.Context, msg *cdproto.Message) error {
	data, err := jsonv2.Marshal(msg, chromedp.DefaultMarshalOptions)
	if err != nil {
		return err
	}
	data = append(data, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.w.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err = c.w.Write(data)
	return err
}

// Close closes both pipes and stops the browser process.
func (c *pipeConn) Close() error {
	c.closeOnce.Do(func() {
		c.w.Close()
		c.rf.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return nil
}
