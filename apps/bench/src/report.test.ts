import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the bench app, without type declarations.
import { escapeXml, renderMarkdown, renderSvg, targetVerdict } from './report.mjs';

const summary = (seconds: number, cpuSeconds: number, peakMiB: number) => ({
  medianSeconds: seconds,
  medianCpuSeconds: cpuSeconds,
  peakMiB,
  samples: [{ seconds, cpuSeconds, peakMiB }],
});

function results(withReference: boolean) {
  const rows = [
    {
      name: 'fast-row',
      groups: ['bulk'],
      description: 'a row <faster> than skopeo',
      target: { ratio: 0.8, of: 'wall', source: 'issue 16' },
      memoryLimitMiB: 150,
      bytes: 64 * 1024 * 1024,
      gantry: summary(1, 0.5, 120),
      ...(withReference
        ? { referenceName: 'skopeo', reference: summary(2, 1, 20), wallRatio: 0.5, cpuRatio: 0.5 }
        : {}),
    },
    {
      name: 'slow-row',
      groups: ['registry'],
      description: 'a row | slower',
      target: { ratio: 0.7, of: 'wall', source: 'issue 16' },
      memoryLimitMiB: 150,
      gantry: summary(3, 2, 180),
      ...(withReference
        ? { referenceName: 'skopeo', reference: summary(2, 1, 20), wallRatio: 1.5, cpuRatio: 2 }
        : {}),
    },
    { name: 'broken-row', groups: ['sync'], description: 'fails', error: 'sync failed (exit 1)\nmore' },
  ];
  return {
    schema: 1,
    quick: false,
    runs: 3,
    startedAt: '2026-01-01T00:00:00.000Z',
    durationSeconds: 600,
    machine: {
      cores: 2,
      cpuModel: 'Test CPU',
      memoryGiB: 24,
      kernel: 'Linux 6',
      node: 'v20.0.0',
      gantry: '0.1.0',
      commit: 'abc1234',
      skopeo: withReference ? 'skopeo version 1.9.3' : null,
      loadAverageStart: [0.1, 0.2, 0.3],
      loadAverageEnd: [1, 1, 1],
    },
    rows,
    derived: ['signature verification: 40 ms'],
    floors: [
      {
        name: 'sha256-node',
        description: 'SHA-256',
        bytes: 1024 * 1024 * 1024,
        seconds: 2,
        cpuSeconds: 2,
        peakMiB: 50,
      },
    ],
  };
}

describe('the benchmark report', () => {
  it('judges each target from the ratio of the same run', () => {
    const [fast, slow, broken] = results(true).rows;
    expect(targetVerdict(fast)).toBe('met');
    expect(targetVerdict(slow)).toBe('not met');
    expect(targetVerdict(broken)).toBe('');
    // Without a reference there is nothing to judge.
    expect(targetVerdict(results(false).rows[0])).toBe('');
  });

  it('writes the machine, every row with its ratios and verdicts, the floors and the failures', () => {
    const markdown = renderMarkdown(results(true), { chartFile: 'chart.svg' });
    expect(markdown).toContain('2 CPU cores (Test CPU)');
    expect(markdown).toContain('Node.js v20.0.0');
    expect(markdown).toContain('skopeo version 1.9.3');
    expect(markdown).toContain('![Gantry ÷ reference per row](chart.svg)');
    expect(markdown).toMatch(
      /\| fast-row \| a row <faster> than skopeo \| 1\.00 \| 2\.00 \| 0\.50× \| 0\.50 \| 1\.00 \| 0\.50× \| 120 \| 20 \| ≤ 0\.8× wall \(issue 16\) \| met; memory ≤ 150 MiB: met \|/,
    );
    expect(markdown).toMatch(/\| slow-row \| a row \\\| slower \|.*\| not met; memory ≤ 150 MiB: not met \|/);
    expect(markdown).toContain('- broken-row: sync failed (exit 1)');
    expect(markdown).not.toContain('\nmore');
    expect(markdown).toMatch(/\| SHA-256 \| 1024 \| 2\.00 \| 2\.00 \| 512 \| 512 \| 50 \|/);
    expect(markdown).toContain('signature verification: 40 ms');
    // Throughput of the rows that move data: 64 MiB over 0.5 s CPU (Gantry) and 1 s (skopeo).
    expect(markdown).toMatch(/\| fast-row \| 64 \| 128 \| 64 \|/);
  });

  it("lists the registries' CPU time and the floor it sets beside the rows that measured it", () => {
    const withRegistry = results(true);
    const slow = withRegistry.rows[1] as Record<string, unknown>;
    slow.gantry = { ...summary(3, 2, 180), medianRegistryCpuSeconds: 3, cpuFloorSeconds: 2.5 };
    slow.reference = { ...summary(2, 1, 20), medianRegistryCpuSeconds: 4, cpuFloorSeconds: 2.5 };
    const markdown = renderMarkdown(withRegistry);
    expect(markdown).toContain('## Registry CPU');
    expect(markdown).toMatch(/\| slow-row \| 2\.00 \| 3\.00 \| 2\.50 \| 1\.00 \| 4\.00 \| 2\.50 \|/);
    expect(markdown).not.toMatch(/\| fast-row \| 0\.50 \| –/);
    // Without such measurements there is no section.
    expect(renderMarkdown(results(true))).not.toContain('## Registry CPU');
  });

  it('draws a bar per ratio with the target marked, escaping text', () => {
    const svg = renderSvg({
      ...results(true),
      rows: [{ ...results(true).rows[0], name: 'a<b>&"c"' }, results(true).rows[1]],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" role="img"')).toBe(true);
    expect(svg).toMatch(/^<title>Gantry ÷ skopeo .*<\/title>$/m);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('a&lt;b&gt;&amp;&quot;c&quot;');
    expect(svg).not.toContain('a<b>');
    expect(svg).toContain('>0.50×<');
    expect(svg).toContain('>2.00×<');
    // Two bars per row and the two targets.
    expect(svg.match(/<rect x="300" y="\d+" width="[\d.]+" height="9"/g)).toHaveLength(4);
    expect(svg.match(/stroke="#228833" stroke-width="3"\/>/g)?.length).toBe(3); // legend + 2 rows
    // Every element opened is closed.
    const opened = (svg.match(/<(svg|text|title)\b/g) ?? []).length;
    const closed = (svg.match(/<\/(svg|text|title)>/g) ?? []).length;
    expect(opened).toBe(closed);
  });

  it('shows Gantry alone in seconds when no reference was measured', () => {
    const alone = results(false);
    const markdown = renderMarkdown(alone);
    expect(markdown).toContain('no skopeo (Gantry alone)');
    expect(markdown).toMatch(/\| fast-row \| a row <faster> than skopeo \| 1\.00 \| – \| – \|/);
    const svg = renderSvg(alone);
    expect(svg).toContain('Gantry alone: median wall and CPU seconds');
    expect(svg).toContain('>3.00 s<');
  });

  it('escapes XML', () => {
    expect(escapeXml(`<a href="x">&</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;');
  });
});
