// Renders bench/results.json (written by bench.mjs) as the Markdown report and its SVG chart. Pure
// functions of the results: `pnpm bench -- --report-only` renders the committed results again.

const fixed = (value, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const ratioText = (value) => (Number.isFinite(value) ? `${value.toFixed(2)}×` : '–');
const mib = (bytes) => bytes / (1024 * 1024);

/** Escapes text for SVG/XML content and attribute values. */
export function escapeXml(text) {
  return String(text)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');
}

/** Escapes a Markdown table cell. */
const cell = (text) => String(text).replaceAll('|', '\\|').replaceAll('\n', ' ');

/** Whether a row compares Gantry with something measured in the same run. */
const compared = (row) => row.reference !== undefined && row.reference !== null;

/** The verdict on a row's target: 'met', 'not met', or '' (no target, or nothing to compare with). */
export function targetVerdict(row) {
  if (!row.target || !compared(row)) return '';
  const ratio = row.target.of === 'cpu' ? row.cpuRatio : row.wallRatio;
  if (!Number.isFinite(ratio)) return '';
  return ratio <= row.target.ratio ? 'met' : 'not met';
}

function memoryVerdict(row) {
  if (row.memoryLimitMiB === undefined) return '';
  return row.gantry.peakMiB <= row.memoryLimitMiB ? 'met' : 'not met';
}

/**
 * The chart: per row, Gantry's wall-time ratio and CPU-time ratio against the reference (skopeo, or
 * the floor named in the row), as horizontal bars on a linear scale, with parity (1×) drawn and the
 * row's target marked. Without references (a run without skopeo), Gantry's own wall and CPU seconds.
 */
export function renderSvg(results) {
  const rows = results.rows.filter((row) => row.gantry);
  const withReference = rows.some(compared);
  const plotted = withReference ? rows.filter(compared) : rows;
  const labelWidth = 300;
  const plotWidth = 460;
  const rowHeight = 26;
  const top = 48;
  const height = top + plotted.length * rowHeight + 30;
  const width = labelWidth + plotWidth + 90;
  const values = plotted.flatMap((row) =>
    withReference
      ? [row.wallRatio, row.cpuRatio, row.target?.ratio ?? 0]
      : [row.gantry.medianSeconds, row.gantry.medianCpuSeconds],
  );
  const finite = values.filter(Number.isFinite);
  const scaleMax = withReference
    ? Math.min(4, Math.max(1.5, ...finite) * 1.05)
    : Math.max(0.1, ...finite) * 1.05;
  const x = (value) => labelWidth + (Math.min(value, scaleMax) / scaleMax) * plotWidth;
  const title = withReference
    ? 'Gantry ÷ skopeo (or the floor named): median wall time and CPU time; lower is better'
    : 'Gantry alone: median wall and CPU seconds';
  const parts = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<rect x="${labelWidth}" y="26" width="12" height="10" fill="#4477aa"/><text x="${labelWidth + 16}" y="35">wall</text>`,
    `<rect x="${labelWidth + 60}" y="26" width="12" height="10" fill="#ee7733"/><text x="${labelWidth + 76}" y="35">CPU (user+sys)</text>`,
  );
  if (withReference) {
    parts.push(
      `<line x1="${labelWidth + 190}" y1="31" x2="${labelWidth + 202}" y2="31" stroke="#228833" stroke-width="3"/><text x="${labelWidth + 206}" y="35">target</text>`,
    );
  }
  const gridSteps = withReference ? [0.5, 1, 1.5, 2, 3, 4].filter((step) => step <= scaleMax) : [];
  for (const step of gridSteps) {
    parts.push(
      `<line x1="${x(step)}" y1="${top - 4}" x2="${x(step)}" y2="${height - 26}" stroke="${step === 1 ? '#333333' : '#dddddd'}" stroke-width="${step === 1 ? 1.5 : 1}"/>`,
      `<text x="${x(step)}" y="${height - 12}" text-anchor="middle">${step}×</text>`,
    );
  }
  plotted.forEach((row, index) => {
    const y = top + index * rowHeight;
    const [first, second] = withReference
      ? [row.wallRatio, row.cpuRatio]
      : [row.gantry.medianSeconds, row.gantry.medianCpuSeconds];
    const label = (value) => (withReference ? ratioText(value) : `${fixed(value)} s`);
    parts.push(`<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end">${escapeXml(row.name)}</text>`);
    for (const [offset, value, colour] of [
      [2, first, '#4477aa'],
      [12, second, '#ee7733'],
    ]) {
      if (!Number.isFinite(value)) continue;
      const end = x(value);
      parts.push(
        `<rect x="${labelWidth}" y="${y + offset}" width="${Math.max(1, end - labelWidth).toFixed(1)}" height="9" fill="${colour}"/>`,
        `<text x="${(end + 4).toFixed(1)}" y="${y + offset + 8}" font-size="10">${escapeXml(
          label(value) + (value > scaleMax ? ' ▸' : ''),
        )}</text>`,
      );
    }
    if (withReference && row.target) {
      const tx = x(row.target.ratio).toFixed(1);
      parts.push(`<line x1="${tx}" y1="${y}" x2="${tx}" y2="${y + 23}" stroke="#228833" stroke-width="3"/>`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** The Markdown report; `chartFile` is the SVG's name beside it. */
export function renderMarkdown(results, { chartFile = 'benchmarks.svg' } = {}) {
  const { machine } = results;
  const lines = [];
  const reference = machine.skopeo ? machine.skopeo : 'no skopeo (Gantry alone)';
  lines.push(
    '# Benchmarks',
    '',
    `Gantry side by side with ${reference}, generated by \`pnpm bench\` (apps/bench) from`,
    '[`bench/results.json`](../bench/results.json); regenerate this page with `pnpm bench` (a new run) or',
    '`pnpm bench -- --report-only` (from the saved results).',
    '',
  );
  if (results.quick) {
    lines.push(
      '> **Quick mode** (small data, one run each): this report proves the generator works; its numbers say nothing about speed.',
      '',
    );
  }
  lines.push(
    '## The machine',
    '',
    `- ${machine.cores} CPU cores (${cell(machine.cpuModel)}), ${fixed(machine.memoryGiB, 1)} GiB memory, ${cell(machine.kernel)}`,
    `- Node.js ${machine.node}, Gantry ${machine.gantry}${machine.commit ? ` (commit ${machine.commit})` : ''}`,
    `- ${machine.skopeo ?? 'skopeo not run'}`,
    `- load average ${machine.loadAverageStart.map((value) => fixed(value)).join(', ')} at the start, ${machine.loadAverageEnd.map((value) => fixed(value)).join(', ')} at the end (1, 5, 15 min); run started ${results.startedAt}, took ${fixed(results.durationSeconds / 60, 1)} min`,
    ...(Math.max(machine.loadAverageStart[0], machine.loadAverageEnd[0]) > machine.cores
      ? [
          `- **The machine was shared**: a load average above its ${machine.cores} cores means other work competed for them, so wall times (and, less so, CPU times) are inflated and noisy; read the numbers as indicative, and the ratios (both tools alternating in the same spell) as the comparison.`,
        ]
      : []),
    ...(results.rowsInBenchmark && results.rows.length < results.rowsInBenchmark
      ? [
          `- This run measured ${results.rows.length} of the benchmark's ${results.rowsInBenchmark} rows (\`pnpm bench -- --rows …\`); \`pnpm bench\` runs them all.`,
        ]
      : []),
    '',
    '## How it is measured',
    '',
    `- Each row runs each tool ${results.runs} time(s), the tools alternating run by run, so a slow spell of the machine hits both; the table gives the medians.`,
    '- Wall time, CPU time (user + system) and peak memory come from `wait4(2)` on the command: CPU covers the command and all its child processes; peak memory is the resident set of the largest process of that tree.',
    '- The ratio is Gantry ÷ the reference; below 1 Gantry is faster. Rows whose reference is not skopeo name it (the `ostree` rows compare with `ostree commit` of the already-extracted layers: the floor).',
    '- On a machine shared with other work, CPU time is the steadier comparison; wall time includes waiting for a core.',
    "- Data is made by Gantry's deterministic fixture builder; registries are Debian's `docker-registry` on 127.0.0.1, dockerd (when a row needs it) runs with vfs storage on its own socket.",
    '',
    `![Gantry ÷ reference per row](${chartFile})`,
    '',
    '## Results',
    '',
    '| row | what | Gantry wall s | ref. wall s | wall ratio | Gantry CPU s | ref. CPU s | CPU ratio | Gantry MiB | ref. MiB | target | |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  );
  for (const row of results.rows) {
    if (!row.gantry) continue;
    const ref = compared(row) ? row.reference : undefined;
    const target = row.target
      ? `≤ ${row.target.ratio}× ${row.target.of === 'cpu' ? 'CPU' : 'wall'} (${row.target.source})`
      : '';
    const memory =
      row.memoryLimitMiB !== undefined ? `memory ≤ ${row.memoryLimitMiB} MiB: ${memoryVerdict(row)}` : '';
    const verdict = [targetVerdict(row), memory].filter(Boolean).join('; ');
    lines.push(
      `| ${cell(row.name)} | ${cell(row.description)}${row.referenceName && row.referenceName !== 'skopeo' ? ` (reference: ${cell(row.referenceName)})` : ''} | ${fixed(row.gantry.medianSeconds)} | ${fixed(ref?.medianSeconds)} | ${ratioText(row.wallRatio)} | ${fixed(row.gantry.medianCpuSeconds)} | ${fixed(ref?.medianCpuSeconds)} | ${ratioText(row.cpuRatio)} | ${fixed(row.gantry.peakMiB, 0)} | ${fixed(ref?.peakMiB, 0)} | ${cell(target)} | ${cell(verdict)} |`,
    );
  }
  const failed = results.rows.filter((row) => row.error);
  if (failed.length > 0) {
    lines.push('', 'Rows that failed:', '');
    for (const row of failed) lines.push(`- ${row.name}: ${cell(row.error.split('\n')[0])}`);
  }
  if (results.derived?.length) {
    lines.push('', '## Derived', '');
    for (const item of results.derived) lines.push(`- ${item}`);
  }
  const withRegistryCpu = results.rows.filter((row) => row.gantry?.medianRegistryCpuSeconds !== undefined);
  if (withRegistryCpu.length > 0) {
    lines.push(
      '',
      '## Registry CPU',
      '',
      `The registry rows' registries run on the same ${machine.cores} cores as the tools: their CPU time during each run (from /proc), and the floor it sets under the wall time, (tool CPU + registry CPU) ÷ cores, medians.`,
      '',
      "| row | Gantry CPU s | its registries' CPU s | Gantry CPU floor s | ref. CPU s | its registries' CPU s | ref. CPU floor s |",
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const row of withRegistryCpu) {
      const ref = compared(row) ? row.reference : undefined;
      lines.push(
        `| ${cell(row.name)} | ${fixed(row.gantry.medianCpuSeconds)} | ${fixed(row.gantry.medianRegistryCpuSeconds)} | ${fixed(row.gantry.cpuFloorSeconds)} | ${fixed(ref?.medianCpuSeconds)} | ${fixed(ref?.medianRegistryCpuSeconds)} | ${fixed(ref?.cpuFloorSeconds)} |`,
      );
    }
  }
  if (results.startupFloors?.length) {
    lines.push(
      '',
      '## Start-up floors',
      '',
      'Beside the start-up rows (`inspect`, re-push): what starting a process costs before any work, medians of alternating runs.',
      '',
      '| floor | wall s | CPU s | peak MiB |',
      '| --- | ---: | ---: | ---: |',
    );
    for (const floor of results.startupFloors) {
      lines.push(
        `| ${cell(floor.description)} | ${fixed(floor.medianSeconds, 3)} | ${fixed(floor.medianCpuSeconds, 3)} | ${fixed(floor.peakMiB, 0)} |`,
      );
    }
  }
  if (results.floors?.length) {
    lines.push(
      '',
      "## The machine's floors on the same data",
      '',
      'What the machine itself needs to move the bytes the rows move: no copy tool can go below these.',
      'Throughput is the data size over the wall time and over the CPU time.',
      '',
      '| floor | data MiB | wall s | CPU s | MiB/s (wall) | MiB per CPU s | peak MiB |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const floor of results.floors) {
      lines.push(
        `| ${cell(floor.description)} | ${fixed(mib(floor.bytes), 0)} | ${fixed(floor.seconds)} | ${fixed(floor.cpuSeconds)} | ${fixed(mib(floor.bytes) / floor.seconds, 0)} | ${fixed(mib(floor.bytes) / floor.cpuSeconds, 0)} | ${fixed(floor.peakMiB, 0)} |`,
      );
    }
    const withBytes = results.rows.filter((row) => row.gantry && row.bytes);
    if (withBytes.length > 0) {
      lines.push(
        '',
        'The rows that move bulk data, as throughput (image bytes as stored at the source):',
        '',
        '| row | data MiB | Gantry MiB per CPU s | ref. MiB per CPU s |',
        '| --- | ---: | ---: | ---: |',
      );
      for (const row of withBytes) {
        const data = mib(row.bytes);
        lines.push(
          `| ${cell(row.name)} | ${fixed(data, 0)} | ${fixed(data / row.gantry.medianCpuSeconds, 0)} | ${compared(row) ? fixed(data / row.reference.medianCpuSeconds, 0) : '–'} |`,
        );
      }
    }
  }
  lines.push(
    '',
    '## Running it',
    '',
    '```sh',
    'pnpm bench                                  # every row, 3 runs each (well under 20 minutes on 2 cores)',
    'pnpm bench -- --rows registry-to-oci,bulk   # rows by name, group (bulk, registry, local, recompression, sync, containers-storage, ostree, signatures, start-up) or prefix*',
    'pnpm bench -- --list                        # the rows and their groups',
    'pnpm bench -- --no-skopeo                   # Gantry alone',
    'pnpm bench -- --quick                       # small data, one run: checks the benchmark itself',
    'pnpm bench -- --report-only                 # renders docs/benchmarks.md again from bench/results.json',
    '```',
    '',
  );
  return lines.join('\n');
}
