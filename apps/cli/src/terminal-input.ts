/**
 * Reading answers from standard input, as containers/common's login prompts do: a line at a time, and a
 * secret without echo when stdin is a terminal (Go's term.ReadPassword). One reader per command run: a
 * line read and a secret read after it share the bytes already received.
 */
import { StringDecoder } from 'node:string_decoder';
import { ErrorCodes, GantryError } from '@gantry/core';
import { abortError } from '@gantry/core/transport';

/** A terminal stdin (`tty.ReadStream`): the part of it the secret read uses. */
interface TerminalStream extends NodeJS.ReadableStream {
  isTTY: true;
  isRaw: boolean;
  setRawMode(mode: boolean): unknown;
}

function isTerminal(stream: NodeJS.ReadableStream): stream is TerminalStream {
  const candidate = stream as Partial<TerminalStream>;
  return candidate.isTTY === true && typeof candidate.setRawMode === 'function';
}

/** Reached the end of stdin before a full answer. */
export class EndOfInputError extends GantryError {
  constructor() {
    super(ErrorCodes.Usage, 'EOF');
  }
}

export interface StdinReader {
  /** Whether stdin is a terminal (a secret is then read without echo). */
  readonly isTerminal: boolean;
  /** The next line, without its line end; `EndOfInputError` at the end of input with nothing read. */
  readLine(): Promise<string>;
  /**
   * A secret: on a terminal, read in raw mode (no echo; Backspace and Ctrl-U edit, Enter ends it, Ctrl-D
   * on an empty answer is the end of input, Ctrl-C raises SIGINT as the terminal would have), with the
   * terminal's mode restored after; elsewhere, the next line. `prompt` is called once echo is off.
   */
  readSecret(prompt?: () => void): Promise<string>;
  /** Everything up to the end of input. */
  readAll(): Promise<string>;
  /** Stops reading stdin (lets the process exit) and restores the terminal's mode. */
  close(): void;
}

/** A reader over `stream`; reading aborts with `signal`. Nothing is read from the stream before the first call. */
export function createStdinReader(stream: NodeJS.ReadableStream, signal?: AbortSignal): StdinReader {
  const decoder = new StringDecoder('utf8');
  let buffer = '';
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  let listening = false;

  const onData = (chunk: string | Buffer) => {
    buffer += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    stream.pause();
    wake?.();
  };
  const onEnd = () => {
    buffer += decoder.end();
    ended = true;
    wake?.();
  };
  const onError = (error: Error) => {
    failure = error;
    wake?.();
  };
  const onAbort = () => wake?.();

  /** Waits for more input (or its end, an error, an abort). */
  const more = async (): Promise<void> => {
    if (!listening) {
      listening = true;
      stream.on('data', onData);
      stream.on('end', onEnd);
      stream.on('error', onError);
      signal?.addEventListener('abort', onAbort);
    }
    if (signal?.aborted) throw abortError(signal);
    if (failure) throw failure;
    if (ended) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
      stream.resume();
    });
    wake = undefined;
    if (signal?.aborted) throw abortError(signal);
    if (failure) throw failure;
  };

  const readLine = async (): Promise<string> => {
    for (;;) {
      const end = buffer.indexOf('\n');
      if (end !== -1) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        return line.endsWith('\r') ? line.slice(0, -1) : line;
      }
      if (ended) {
        if (buffer === '') throw new EndOfInputError();
        const line = buffer;
        buffer = '';
        return line;
      }
      await more();
    }
  };

  const readRawSecret = async (terminal: TerminalStream, prompt?: () => void): Promise<string> => {
    const wasRaw = terminal.isRaw;
    terminal.setRawMode(true);
    try {
      prompt?.();
      let secret = '';
      for (;;) {
        while (buffer.length > 0) {
          const character = buffer[0]!;
          buffer = buffer.slice(1);
          switch (character) {
            case '\r':
            case '\n':
              return secret;
            case '\x7f':
            case '\b':
              secret = Array.from(secret).slice(0, -1).join('');
              break;
            case '\x15':
              secret = '';
              break;
            case '\x04':
              if (secret === '') throw new EndOfInputError();
              return secret;
            case '\x03':
              // Raw mode turns Ctrl-C into a byte; deliver it as the signal the terminal would have sent.
              process.kill(process.pid, 'SIGINT');
              break;
            default:
              secret += character;
          }
        }
        if (ended) {
          if (secret === '') throw new EndOfInputError();
          return secret;
        }
        await more();
      }
    } finally {
      terminal.setRawMode(wasRaw);
    }
  };

  return {
    isTerminal: isTerminal(stream),
    readLine,
    readSecret(prompt) {
      if (isTerminal(stream)) return readRawSecret(stream, prompt);
      prompt?.();
      return readLine();
    },
    async readAll() {
      while (!ended) await more();
      const all = buffer;
      buffer = '';
      return all;
    },
    close() {
      if (!listening) return;
      listening = false;
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      signal?.removeEventListener('abort', onAbort);
      stream.pause();
    },
  };
}
