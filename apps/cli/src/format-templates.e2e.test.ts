/**
 * `inspect --format` Go templates against the real skopeo 1.9.3: Go's text/template builtins (html, js,
 * urlquery, call, print…) and the methods of the values skopeo's inspect data carries (`time.Time`:
 * Format with Go layouts, Month, Weekday, UTC, arithmetic…; `digest.Digest` and its Algorithm), on
 * images created in UTC and at a fixed offset. Outputs must be byte-identical; for templates that fail,
 * the error after the template location (whose name and columns differ: `gantry inspect` is not
 * `skopeo inspect`) must be the same.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
const layouts: Record<string, string> = {};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-format-'));
  for (const [name, created] of [
    ['utc', '2023-07-04T15:04:05.123456789Z'],
    ['offset', '2021-02-28T23:59:59.5+02:00'],
    ['midnight', '2000-01-01T00:00:00Z'],
  ] as const) {
    const image = await buildFixtureImage(
      {
        created,
        config: { Labels: { 'a<b': 'x&y "quoted"', plain: 'v' }, Env: ['A=1', 'B=2 3'] },
        layers: [{ entries: [{ type: 'file', path: 'f', content: name }] }],
      },
      { directory: join(root, 'fixtures', name) },
    );
    layouts[name] = join(root, name);
    await writeFixtureToOciLayout(image, layouts[name]!, 'latest');
  }
}, 120_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

const templates = [
  // time.Time: layouts
  '{{.Created.Format "2006-01-02 Jan January Mon Monday 15 3 03 4 04 5 05 PM pm MST -0700 -07:00 Z07:00"}}',
  '{{.Created.Format ".000 .999 ,000 ,999 .9 .000000000 _2 002 __2 06 1 01 2 02"}}',
  '{{.Created.Format "2006-01-02T15:04:05.000000000Z07:00:00 -07 Z07 -070000 Z070000"}}',
  '{{.Created.Format "Janet Monty __2x _2006 .99x ,9 3:04PM"}}',
  '{{.Created.UTC.Format "Mon Jan _2 15:04:05 2006"}}',
  // time.Time: fields and conversions
  '{{.Created}}|{{.Created.String}}|{{.Created.UTC}}|{{.Created.Local}}|{{.Created.Location}}',
  '{{.Created.Month}} {{.Created.Day}} {{.Created.Year}} {{.Created.Weekday}} {{.Created.YearDay}}',
  '{{.Created.Hour}}:{{.Created.Minute}}:{{.Created.Second}}.{{.Created.Nanosecond}}',
  '{{printf "%d %v %T" .Created.Month .Created.Weekday .Created.Month}}',
  '{{.Created.Unix}} {{.Created.UnixMilli}} {{.Created.UnixMicro}} {{.Created.UnixNano}}',
  '{{printf "%T %T %T %T" .Created .Created.UTC .Created.Unix .Name}}',
  '{{.Created.IsZero}} {{.Created.IsDST}} {{.Created.GoString}}',
  '{{.Created.MarshalJSON}} {{.Created.MarshalText}}',
  // time.Time: arithmetic and comparisons
  '{{.Created.AddDate 1 2 3}} {{.Created.AddDate 0 -12 -400}} {{(.Created.AddDate 0 0 1).Weekday}}',
  '{{.Created.Add 5}} {{.Created.Add -3600000000000}}',
  '{{.Created.Round 3600000000000}} {{.Created.Truncate 86400000000000}} {{.Created.Round 1000}}',
  '{{.Created.Sub .Created}} {{.Created.Before .Created}} {{.Created.Equal .Created}} {{.Created.After .Created}}',
  '{{eq .Created.Month 7}} {{lt .Created.Weekday 7}} {{if .Created.Month}}yes{{end}}',
  // digest.Digest and digest.Algorithm
  '{{.Digest.Algorithm}} {{.Digest.Algorithm.Size}} {{.Digest.Algorithm.Available}} {{.Digest.Validate}}',
  '{{.Digest.Encoded}} {{.Digest.Hex}} {{.Digest.String}} {{slice .Digest 0 7}}',
  // builtins
  '{{html "<a href=\\"x\\">&\'"}} {{html 1 2 "x" 3}} {{html .Labels}}',
  // (skopeo turns a written `\\n` or `\\t` into a newline or tab before parsing: not used in strings here.)
  '{{js "a<b>\\"c\'\\\\ = &\\u00e9\\u2028\\x01"}} {{js .Labels}}',
  '{{urlquery "a b&c=d/é~"}} {{urlquery .Env}} {{urlquery .Name "x y"}}',
  '{{print 1 2 "a" "b" 3}} {{println .Architecture}} {{printf "%5s|%-4d|%x" .Os 7 "hi"}}',
  '{{and 1 0 2}} {{or 0 "" .Os}} {{not .Env}} {{len .Labels}} {{index .Labels "plain"}}',
  '{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}} {{range .Env}}[{{.}}]{{end}}',
];

const failingTemplates = [
  '{{.Created.Zone}}',
  '{{.Created.Date}}',
  '{{.Created.Format}}',
  '{{call .Name}}',
  '{{.Created.Before .Name}}',
  '{{.Name.Format "x"}}',
  '{{.Labels.Format "x"}}',
  '{{.Os.Format "x"}}',
];

function inspect(tool: 'gantry' | 'skopeo', layout: string, template: string) {
  const args = ['inspect', '--format', template, `oci:${layout}:latest`];
  return tool === 'skopeo' ? Promise.resolve(runSkopeo(args)) : runGantry(args);
}

describe('inspect --format as skopeo', () => {
  for (const name of ['utc', 'offset', 'midnight']) {
    it.each(templates)(`${name}: %s`, async (template) => {
      const skopeo = await inspect('skopeo', layouts[name]!, template);
      expect(skopeo.code, skopeo.stderr).toBe(0);
      const gantry = await inspect('gantry', layouts[name]!, template);
      expect(gantry.stderr).toBe('');
      expect(gantry.stdout.toString()).toBe(skopeo.stdout.toString());
    });
  }

  it.each(failingTemplates)('fails as skopeo: %s', async (template) => {
    const skopeo = await inspect('skopeo', layouts.utc!, template);
    const gantry = await inspect('gantry', layouts.utc!, template);
    expect(skopeo.code).toBe(1);
    expect(gantry.code).toBe(1);
    const reason = (stderr: string) => /at <[^>]*>: (.*?)"?\n?$/.exec(stderr)?.[1]?.replace(/\\"/g, '"');
    expect(reason(gantry.stderr), gantry.stderr).toBe(reason(skopeo.stderr));
  });
});
