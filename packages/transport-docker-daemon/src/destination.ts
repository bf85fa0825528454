/**
 * Writing an image into the Docker Engine: `POST /images/load` with a `docker save` archive produced by
 * `@gantry/docker-save-format`'s destination and writer while the copy runs. The request starts when the
 * destination opens and its body is the archive stream itself. gzip layers go into the archive as they
 * are (`keptLayerCompressions`: `docker load` decompresses them and checks their DiffIDs), uncompressed
 * ones too, so their sizes are known and nothing is written to a temporary file. Only a layer the
 * pipeline must decompress (zstd and other formats) has an unknown size: the writer spools it while it
 * arrives (concurrently: `putBlob` may overlap), because a tar header carries the size before the data.
 * The request body is the archive joined into 1 MiB pieces (`createLoadRequestBody`: fewer writes for
 * us, fewer reads for the daemon).
 *
 * - The reference must be `name:tag` (as containers/image: an image ID or `name@digest` is refused).
 * - Layers: uncompressed or gzip (`desiredLayerCompression: 'decompress'`, gzip kept); only Docker schema2 manifests;
 *   the image must match the daemon's OS (`mustMatchRuntimeOS`); no signatures, no manifest lists.
 * - `commit()` ends the archive and reads the daemon's JSON message stream; an `error` message there (or a
 *   non-200 status) rejects with a `GantryError` carrying the daemon's message.
 * - `close()` without `commit()` aborts the request: the daemon sees a truncated tar and loads nothing.
 */
import {
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { DockerArchiveImageDestinationBase } from '@gantry/docker-save-format';
import { DockerEngineClient, dockerHostOf, dockerTlsSettingsOf, type EngineResponse } from './client.js';
import { createLoadRequestBody } from './load-body.js';
import type { DockerDaemonReference } from './reference.js';

/** Reads the JSON message stream of `/images/load`; throws on an `error` message. */
async function readLoadMessages(response: EngineResponse, description: string): Promise<string[]> {
  let text = '';
  for await (const chunk of response.body) {
    if (text.length < 1 << 20) text += Buffer.from(chunk as Uint8Array).toString('utf8');
  }
  if (response.statusCode !== 200) {
    let message = text.trim();
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // not JSON
    }
    throw new GantryError(
      ErrorCodes.Transient,
      `docker daemon refused to load ${description}: status ${response.statusCode}: ${message}`,
    );
  }
  const messages: string[] = [];
  // The stream is concatenated JSON objects (one per line in practice).
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    let parsed: { stream?: unknown; error?: unknown; errorDetail?: { message?: unknown } };
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.Transient,
        `unexpected answer from the docker daemon loading ${description}: ${line}`,
        {
          cause: error,
        },
      );
    }
    const failure = parsed.errorDetail?.message ?? parsed.error;
    if (failure !== undefined) {
      throw new GantryError(
        ErrorCodes.Transient,
        `docker daemon failed to load ${description}: ${String(failure)}`,
      );
    }
    if (typeof parsed.stream === 'string') messages.push(parsed.stream.trim());
  }
  return messages;
}

class DockerDaemonImageDestination extends DockerArchiveImageDestinationBase<DockerDaemonReference> {
  readonly #client: DockerEngineClient;
  readonly #requestAbort: AbortController;
  readonly #response: Promise<EngineResponse>;
  /** The daemon's messages after a successful commit (`Loaded image: …`). */
  loadMessages: string[] = [];

  constructor(
    reference: DockerDaemonReference,
    client: DockerEngineClient,
    tag: DockerReference,
    context: TransportContext,
  ) {
    // The archive's bytes joined into 1 MiB pieces (see load-body.ts).
    const body = createLoadRequestBody();
    super(reference, {
      output: body,
      repoTags: [tag],
      mustMatchRuntimeOS: true,
      // `docker load` decompresses gzip layers itself (and checks their DiffIDs against the config): kept
      // compressed, their size is known before their bytes arrive, so no layer is spooled.
      keptLayerCompressions: ['gzip'],
      storageDescription: 'docker-daemon: destinations',
      context,
    });
    this.#client = client;
    this.#requestAbort = new AbortController();
    const signals = [this.#requestAbort.signal, context.signal].filter((signal) => signal !== undefined);
    this.#response = client.request('POST', '/images/load?quiet=1', {
      body,
      headers: { 'content-type': 'application/x-tar' },
      signal: signals.length === 1 ? signals[0]! : AbortSignal.any(signals),
    });
    // Handled in commit()/close(); avoid an unhandled rejection meanwhile.
    this.#response.catch(() => {});
  }

  /** Reads the daemon's answer to the finished archive; rejects with the daemon's error. */
  protected override async completeArchive(): Promise<void> {
    const response = await this.#response;
    this.loadMessages = await readLoadMessages(
      response,
      `docker-daemon:${this.reference.stringWithinTransport()}`,
    );
  }

  /** Aborts the request: the daemon sees a truncated tar and loads nothing. */
  protected override async discardArchive(): Promise<void> {
    this.#requestAbort.abort(
      new GantryError(ErrorCodes.Aborted, 'docker-daemon destination closed without commit'),
    );
    try {
      const response = await this.#response;
      response.body.destroy();
    } catch {
      // aborted, as intended
    }
    await this.#client.destroy();
  }

  protected override async releaseArchive(): Promise<void> {
    await this.#client.close();
  }
}

/**
 * Opens a destination loading into the daemon as `reference` (`name:tag` only). Contacts the daemon at once
 * (`ERR_GANTRY_TRANSIENT` naming the address when it cannot be reached).
 */
export async function openDockerDaemonImageDestination(
  reference: DockerDaemonReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  const tag = reference.name;
  if (tag === undefined || tag.tag === undefined || tag.digest !== undefined) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid destination docker-daemon:${reference.stringWithinTransport()}: a destination must be a name:tag`,
    );
  }
  const client = new DockerEngineClient(dockerHostOf(context), dockerTlsSettingsOf(context));
  try {
    await client.apiVersion(context.signal);
  } catch (error) {
    await client.close();
    throw error;
  }
  return new DockerDaemonImageDestination(reference, client, tag, context);
}
