/**
 * A stand-in for OpenShift's `X-Registry-Supports-Signatures` API extension, in front of a real
 * registry: every request is forwarded to the registry unchanged, except that `/v2/` answers carry
 * `X-Registry-Supports-Signatures: 1` and `/extensions/v2/<repository>/signatures/<digest>` is served
 * here (GET lists, PUT adds one signature), from memory. Debian's registry has no such extension;
 * this fakes only it, the registry itself stays real.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';

/** One signature as the extension stores it. */
export interface ExtensionSignatureRecord {
  schemaVersion: number;
  name: string;
  type: string;
  content: string;
}

export interface SignatureExtensionServer {
  /** `127.0.0.1:<port>`: use it as the registry host. */
  host: string;
  /** Stored signatures by `<repository>@<digest>`. */
  signatures: Map<string, ExtensionSignatureRecord[]>;
  stop(): Promise<void>;
}

const extensionPattern = /^\/extensions\/v2\/(.+)\/signatures\/([a-z0-9]+:[a-f0-9]+)$/;

async function readBody(incoming: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function answer(response: ServerResponse, status: number, body = ''): void {
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}

/** Starts the extension server in front of `registryHost` (plain HTTP) on a free port. */
export async function startSignatureExtensionServer(registryHost: string): Promise<SignatureExtensionServer> {
  const signatures = new Map<string, ExtensionSignatureRecord[]>();
  const [registryHostname, registryPort] = registryHost.split(':') as [string, string];
  const server = createServer(async (incoming, response) => {
    const path = (incoming.url ?? '/').split('?')[0]!;
    const extension = extensionPattern.exec(path);
    if (extension) {
      const key = `${extension[1]}@${extension[2]}`;
      if (incoming.method === 'GET') {
        answer(response, 200, JSON.stringify({ signatures: signatures.get(key) ?? [] }));
        return;
      }
      if (incoming.method === 'PUT') {
        let record: ExtensionSignatureRecord;
        try {
          record = JSON.parse((await readBody(incoming)).toString()) as ExtensionSignatureRecord;
        } catch {
          answer(response, 400, '{"errors":[{"code":"INVALID","message":"not JSON"}]}');
          return;
        }
        if (
          record.schemaVersion !== 2 ||
          record.type !== 'atomic' ||
          typeof record.content !== 'string' ||
          !record.name?.startsWith(`${extension[2]}@`)
        ) {
          answer(response, 400, '{"errors":[{"code":"INVALID","message":"invalid signature"}]}');
          return;
        }
        signatures.set(key, [...(signatures.get(key) ?? []), record]);
        answer(response, 201);
        return;
      }
      answer(response, 405);
      return;
    }
    const forwarded = httpRequest(
      {
        host: registryHostname,
        port: Number(registryPort),
        method: incoming.method,
        path: incoming.url,
        headers: { ...incoming.headers, host: registryHost },
      },
      (upstream) => {
        const headers = { ...upstream.headers };
        if (path === '/v2/' || path === '/v2') headers['x-registry-supports-signatures'] = '1';
        response.writeHead(upstream.statusCode ?? 502, headers);
        upstream.pipe(response);
      },
    );
    forwarded.on('error', () => {
      if (!response.headersSent) answer(response, 502);
      else response.destroy();
    });
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no server address');
  return {
    host: `127.0.0.1:${address.port}`,
    signatures,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
