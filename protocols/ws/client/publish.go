package client

import "context"

// Publish sends a message and returns its position once kedge acknowledged
// it, which kedge does only after Kafka did. While disconnected the message
// waits in the offline queue (ErrQueueFull past Options.MaxQueue) and is sent
// on reconnect. If the connection drops after sending and before the
// acknowledgement, Publish fails with ErrConnectionLost.
func (c *Client) Publish(ctx context.Context, subject string, payload []byte, headers map[string]string) (string, error) {
	req := map[string]any{"op": "publish", "subject": subject}
	payloadFields(req, payload)
	if len(headers) > 0 {
		req["headers"] = headers
	}
	f, err := c.await(ctx, newCall(req))
	if err != nil {
		return "", err
	}
	return f.Position, nil
}

// Queued returns how many publishes wait for a connection.
func (c *Client) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Ping asks kedge for a pong (a round trip through the connection).
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.await(ctx, newCall(map[string]any{"op": "ping"}))
	return err
}

// await sends a request and waits for its answer.
func (c *Client) await(ctx context.Context, cl *call) (frame, error) {
	if err := c.send(cl); err != nil {
		return frame{}, err
	}
	select {
	case f, ok := <-cl.reply:
		switch {
		case !ok && c.Err() != nil:
			return frame{}, c.Err()
		case !ok:
			return frame{}, ErrConnectionLost
		case f.Op == "error":
			return f, f.err()
		}
		return f, nil
	case <-ctx.Done():
		c.mu.Lock()
		for id, p := range c.pending {
			if p == cl {
				delete(c.pending, id)
			}
		}
		for i, q := range c.queue {
			if q == cl {
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		return frame{}, ctx.Err()
	}
}
