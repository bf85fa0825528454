// Runs one command and measures it as the kernel accounts it: wall time, CPU time (user + system) and
// peak resident memory, through wait4(2) on the child (python3's os.wait4, so no C helper is needed).
// wait4's rusage covers the child and every descendant it waited for: CPU is the whole tree's, and the
// peak RSS (ru_maxrss) is that of the largest single process of the tree (as GNU time's %M).
import { spawnSync } from 'node:child_process';

/**
 * The measuring wrapper: starts argv[1:] (stdout and stderr inherited), waits for it with wait4, and
 * prints one JSON line to fd 3: exit status, wall seconds, user and system seconds, max RSS in KiB.
 */
const wrapper = `
import json, os, sys, time
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.close(3)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as error:
        sys.stderr.write(f"cannot run {sys.argv[1]}: {error}\\n")
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - start
code = os.waitstatus_to_exitcode(status)
with os.fdopen(3, "w") as out:
    json.dump({"status": code, "wall": wall, "user": usage.ru_utime, "system": usage.ru_stime, "maxKiB": usage.ru_maxrss}, out)
`;

/**
 * Runs `command args` and returns `{ seconds, cpuSeconds, userSeconds, systemSeconds, peakMiB }`.
 * Throws (with the command's stderr) when it fails.
 */
export function measure(command, args, { env, cwd } = {}) {
  const result = spawnSync('python3', ['-c', wrapper, command, ...args], {
    encoding: 'utf8',
    env: env ?? process.env,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw new Error(`python3 (the measuring wrapper) could not run: ${result.error.message}`);
  const line = result.output[3] ?? '';
  if (!line) throw new Error(`measuring ${command} failed:\n${result.stderr}`);
  const usage = JSON.parse(line);
  if (usage.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (exit ${usage.status}):\n${result.stderr.slice(-4000)}`,
    );
  }
  return {
    seconds: usage.wall,
    cpuSeconds: usage.user + usage.system,
    userSeconds: usage.user,
    systemSeconds: usage.system,
    peakMiB: usage.maxKiB / 1024,
  };
}

export function median(values) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * The medians of a tool's samples (peak memory: the highest of the runs). Samples of registry rows
 * also carry the registries' CPU time (`registryCpuSeconds`): its median, and the CPU floor it sets
 * on a machine of `cores` cores, (tool CPU + registry CPU) / cores, the least wall time the run could
 * take with every core busy.
 */
export function summarize(samples, { cores } = {}) {
  const summary = {
    medianSeconds: median(samples.map((sample) => sample.seconds)),
    medianCpuSeconds: median(samples.map((sample) => sample.cpuSeconds)),
    peakMiB: Math.max(...samples.map((sample) => sample.peakMiB)),
    samples,
  };
  if (samples.length > 0 && samples.every((sample) => sample.registryCpuSeconds !== undefined)) {
    summary.medianRegistryCpuSeconds = median(samples.map((sample) => sample.registryCpuSeconds));
    if (cores)
      summary.cpuFloorSeconds = median(
        samples.map((sample) => (sample.cpuSeconds + sample.registryCpuSeconds) / cores),
      );
  }
  return summary;
}
