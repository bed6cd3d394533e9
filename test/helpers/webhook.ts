import http from 'node:http';

/** A real Slack-compatible incoming webhook on loopback that keeps every message it was sent. */
export interface Webhook { url: string; messages: { text: string }[]; close(): Promise<void> }

export async function startWebhook(): Promise<Webhook> {
  const messages: { text: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      messages.push(JSON.parse(body) as { text: string });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/hooks/T000/B000/XXXX`, messages, close: () => new Promise((r) => server.close(() => r())) };
}
