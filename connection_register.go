//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

// register hands the connection to a poller. With an OnConnect handler the
// task that runs it is claimed first, so OnRequest cannot start before
// OnConnect returns, and started once the fd is registered.
func (c *connection) register() error {
	connecting := c.onConnect.Load() != nil
	if connecting {
		c.needConnect = true
		c.state.acquireTask()
	} else {
		c.state.setConnected()
	}
	if err := c.op.Control(PollReadable); err != nil {
		if connecting {
			c.needConnect = false
			c.state.releaseTask()
		}
		return err
	}
	if connecting {
		runTask(c.context(), c.task)
	}
	return nil
}
