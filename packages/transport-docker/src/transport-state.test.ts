import { describe, expect, it } from 'vitest';
import { pingReuseMs, RegistryPings } from './transport-state.js';

describe('RegistryPings', () => {
  const answer = { scheme: 'http' as const, challenges: [], supportsSignatureExtension: false };

  it('reuses a ping (also one in flight) while fresh, pings again after pingReuseMs or forget', async () => {
    const pings = new RegistryPings();
    let count = 0;
    const ping = async () => {
      count += 1;
      return answer;
    };
    await Promise.all([pings.get('a', ping, 0), pings.get('a', ping, 1)]);
    expect(count).toBe(1);
    await pings.get('a', ping, pingReuseMs - 1);
    expect(count).toBe(1);
    await pings.get('b', ping, 2);
    expect(count).toBe(2);
    await pings.get('a', ping, pingReuseMs);
    expect(count).toBe(3);
    pings.forget('a');
    await pings.get('a', ping, pingReuseMs + 1);
    expect(count).toBe(4);
  });

  it('does not keep a failed ping', async () => {
    const pings = new RegistryPings();
    await expect(pings.get('a', async () => Promise.reject(new Error('refused')), 0)).rejects.toThrow(
      'refused',
    );
    await expect(pings.get('a', async () => answer, 1)).resolves.toBe(answer);
  });
});
