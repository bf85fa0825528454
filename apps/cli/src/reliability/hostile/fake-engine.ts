/**
 * A Docker Engine API that lies, on a unix socket of the test's own: it answers `/_ping` like a daemon and
 * `GET /images/{name}/get` (what `docker-daemon:` reads) with whatever the test hands it (a hostile
 * `docker save` stream, an error with a huge body). Enough of the API for the docker-daemon source; a
 * real dockerd would refuse to hold such images in the first place.
 */
import { createServer, type ServerResponse } from 'node:http';

export type ImageAnswer = (response: ServerResponse) => void;

export interface FakeEngine {
  /** `unix://<socket>`: pass as `--src-daemon-host`. */
  host: string;
  /** The answer to `GET /images/{name}/get`, by image name as the client sends it. */
  images: Map<string, ImageAnswer>;
  stop(): Promise<void>;
}

export async function startFakeEngine(socketPath: string): Promise<FakeEngine> {
  const images = new Map<string, ImageAnswer>();
  const server = createServer((incoming, response) => {
    const path = (incoming.url ?? '').replace(/^\/v[\d.]+/, '');
    if (path === '/_ping') {
      response.writeHead(200, { 'api-version': '1.41', 'content-type': 'text/plain' });
      response.end('OK');
      return;
    }
    const match = /^\/images\/([^/?]+)\/get/.exec(path);
    const answer = match ? images.get(decodeURIComponent(match[1]!)) : undefined;
    if (incoming.method === 'GET' && answer) {
      answer(response);
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ message: `No such image: ${match?.[1] ?? path}` }));
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    host: `unix://${socketPath}`,
    images,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
