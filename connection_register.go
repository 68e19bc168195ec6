//go:build darwin || freebsd || linux

package netpoll

import "golang.org/x/sys/unix"

// start sets TCP_NODELAY (setNoDelay) and registers the connection; if
// that fails, the fd is closed.
func (c *connection) start() error {
	c.setNoDelay()
	if err := c.register(); err != nil {
		unix.Close(c.fd.num())
		return err
	}
	return nil
}

// setNoDelay turns Nagle off on a TCP connection, as every accepted and
// dialed one gets.
func (c *connection) setNoDelay() {
	if c.isTCP {
		sysNoDelay(c.fd.num())
	}
}

// register hands the connection to a poller. With an OnConnect handler the
// task that runs it is claimed first, so OnRequest cannot start before
// OnConnect returns, and started once the fd is registered.
func (c *connection) register() error {
	connecting := c.onConnect.Load() != nil
	if connecting {
		if !c.state.acquireTask() { // a racing close finished the connection
			return Exception(ErrConnClosed, "when register")
		}
		c.needConnect = true
	} else {
		c.state.setConnected()
	}
	if err := c.add(); err != nil {
		if connecting {
			c.needConnect = false
			c.release(holdTask) // finalizes if a close raced the registration
		}
		return err
	}
	if connecting {
		c.scheduleTask()
	}
	return nil
}

// add registers the fd for input. It holds an fd reference meanwhile, so a
// racing close cannot hand the fd number to someone else under the
// registration; and if that close already unregistered the connection, the
// registration made here is undone.
func (c *connection) add() error {
	if !c.fd.acquire() {
		return Exception(ErrConnClosed, "when register")
	}
	defer c.fd.release()
	if err := c.op.Control(PollReadable); err != nil {
		return err
	}
	if c.state.phase() != phaseOpen {
		_ = c.op.Control(PollDetach)
	}
	return nil
}
