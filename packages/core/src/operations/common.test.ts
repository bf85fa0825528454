import { describe, expect, it } from 'vitest';
import type { TransportContext } from '../transport/contract.js';
import { contextOf } from './common.js';

describe('contextOf', () => {
  it("is the caller's context object when it already has the operation's signal", () => {
    const controller = new AbortController();
    const context: TransportContext = { registriesConfPath: '/etc/x.conf', signal: controller.signal };
    // Transports keep what they read from configuration files per context object.
    expect(contextOf({ context })).toBe(context);
    expect(contextOf({ context, signal: controller.signal })).toBe(context);
    const withoutSignal: TransportContext = { registriesConfPath: '/etc/y.conf' };
    expect(contextOf({ context: withoutSignal })).toBe(withoutSignal);
  });

  it('is a copy with the signal when the operation has another one', () => {
    const context: TransportContext = { registriesConfPath: '/etc/x.conf' };
    const signal = new AbortController().signal;
    const derived = contextOf({ context, signal });
    expect(derived).not.toBe(context);
    expect(derived).toEqual({ registriesConfPath: '/etc/x.conf', signal });
    expect(context.signal).toBeUndefined();
    const replaced = contextOf({ context: { ...context, signal: new AbortController().signal }, signal });
    expect(replaced.signal).toBe(signal);
    expect(contextOf({})).toEqual({});
  });
});
