//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

// register hands the connection to a poller. With an OnConnect handler the
// task that runs it is claimed first, so OnRequest cannot start before
// OnConnect returns, and started once the fd is registered.
func (c *connection) register() error {
	p, err := pollmanager.pick()
	if err != nil {
		return err
	}
	connecting := c.onConnect.Load() != nil
	if connecting {
		c.needConnect = true
		c.state.acquireTask()
	} else {
		c.state.setConnected()
	}
	c.op.poll = p
	if err = p.Control(&c.op, PollReadable); err != nil {
		c.op.poll = nil
		if connecting {
			c.needConnect = false
			c.state.releaseTask()
		}
		return err
	}
	if connecting {
		runTask(c.context(), c.task)
	} else if c.in.Len() > 0 {
		c.startTask()
	}
	return nil
}
