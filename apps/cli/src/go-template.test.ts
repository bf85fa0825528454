import { describe, expect, it } from 'vitest';
import { executeGoTemplate, GoTemplate, TemplateError } from './go-template.js';
import { GoInt, GoMap, GoNamedString, GoNil, GoSlice, GoStruct, GoTime } from './go-values.js';

/** A value shaped like skopeo's inspect.Output. */
const output = new GoStruct('inspect.Output', [
  { name: 'Name', jsonName: 'Name', omitEmpty: true, value: 'docker.io/library/busybox' },
  { name: 'Tag', jsonName: 'Tag', omitEmpty: true, value: '' },
  {
    name: 'Digest',
    jsonName: 'Digest',
    omitEmpty: false,
    value: new GoNamedString('digest.Digest', 'sha256:abc'),
  },
  { name: 'RepoTags', jsonName: 'RepoTags', omitEmpty: false, value: new GoSlice('[]string', []) },
  { name: 'Created', jsonName: 'Created', omitEmpty: false, value: new GoTime('2024-01-01T00:00:00.500Z') },
  {
    name: 'Labels',
    jsonName: 'Labels',
    omitEmpty: false,
    value: new GoMap(
      'map[string]string',
      new Map([
        ['z', '1'],
        ['a', '<b&c>'],
      ]),
      '',
    ),
  },
  { name: 'Env', jsonName: 'Env', omitEmpty: false, value: new GoSlice('[]string', [], true) },
  { name: 'Layers', jsonName: 'Layers', omitEmpty: false, value: new GoSlice('[]string', ['l1', 'l2']) },
  {
    name: 'LayersData',
    jsonName: 'LayersData',
    omitEmpty: false,
    value: new GoSlice('[]LayersData', [
      new GoStruct('types.ImageInspectLayer', [
        { name: 'MIMEType', jsonName: 'MIMEType', omitEmpty: false, value: 'application/x' },
        { name: 'Size', jsonName: 'Size', omitEmpty: false, value: new GoInt(1234567) },
        {
          name: 'Annotations',
          jsonName: 'Annotations',
          omitEmpty: false,
          value: new GoMap('map[string]string', new Map(), '', true),
        },
      ]),
    ]),
  },
  { name: 'Pointer', jsonName: 'Pointer', omitEmpty: false, value: new GoNil('*time.Time') },
]);

/** [template, expected output] — expected values are what Go's text/template prints for the same data. */
const table: Array<[string, string]> = [
  ['plain text', 'plain text'],
  ['{{.Name}}', 'docker.io/library/busybox'],
  ['{{.Tag}}|', '|'],
  ['{{.Digest}} {{.Digest.Algorithm}} {{.Digest.Encoded}}', 'sha256:abc sha256 abc'],
  ['{{.RepoTags}} {{.Env}} {{.Layers}}', '[] [] [l1 l2]'],
  ['{{.Labels}}', 'map[a:<b&c> z:1]'],
  ['{{.Created}}', '2024-01-01 00:00:00.5 +0000 UTC'],
  ['{{.Created.Unix}} {{.Created.Year}}', '1704067200 2024'],
  ['{{.Pointer}}', '<nil>'],
  ['{{.LayersData}}', '[{application/x 1234567 map[]}]'],
  ['{{(index .LayersData 0).Size}}', '1234567'],
  ['{{range .LayersData}}{{.MIMEType}}{{end}}', 'application/x'],
  ['{{.Labels.a}} {{.Labels.missing}}', '<b&c> <no value>'],
  ['{{index .Labels "z"}}|{{index .Labels "missing"}}|', '1||'],
  ['{{index .Layers 1}}', 'l2'],
  ['{{len .Layers}} {{len .Labels}} {{len .Env}} {{len .Name}}', '2 2 0 25'],
  ['{{.Layers | len}}', '2'],
  ['{{range .Layers}}<{{.}}>{{end}}', '<l1><l2>'],
  ['{{range $i, $e := .Layers}}{{$i}}={{$e}};{{end}}', '0=l1;1=l2;'],
  ['{{range $e := .Layers}}{{$e}}{{end}}', 'l1l2'],
  ['{{range $k, $v := .Labels}}{{$k}}:{{$v}} {{end}}', 'a:<b&c> z:1 '],
  ['{{range .Env}}x{{else}}empty{{end}}', 'empty'],
  ['{{range .Layers}}{{if eq . "l1"}}{{continue}}{{end}}{{.}}{{end}}', 'l2'],
  ['{{range .Layers}}{{.}}{{break}}{{end}}', 'l1'],
  ['{{if .Env}}env{{else if .Layers}}layers{{else}}none{{end}}', 'layers'],
  ['{{if .Tag}}tag{{else}}no tag{{end}}', 'no tag'],
  ['{{with .Name}}{{.}}{{end}}', 'docker.io/library/busybox'],
  ['{{with .Tag}}x{{else}}y{{end}}', 'y'],
  ['{{$n := .Name}}{{$n}}', 'docker.io/library/busybox'],
  ['{{$x := 1}}{{$x = 2}}{{$x}}', '2'],
  ['{{range .Layers}}{{$.Name}} {{end}}', 'docker.io/library/busybox docker.io/library/busybox '],
  ['{{json .Layers}}', '["l1","l2"]'],
  ['{{json .Labels}}', '{"a":"<b&c>","z":"1"}'],
  ['{{json .Env}} {{json .Created}} {{json .Tag}}', 'null "2024-01-01T00:00:00.5Z" ""'],
  ['{{json .LayersData}}', '[{"MIMEType":"application/x","Size":1234567,"Annotations":null}]'],
  ['{{join .Layers ","}}', 'l1,l2'],
  ['{{split "a:b:c" ":"}}', '[a b c]'],
  ['{{lower "ABC"}} {{upper .Name}}', 'abc DOCKER.IO/LIBRARY/BUSYBOX'],
  ['{{title "hello world"}}', 'Hello World'],
  ['{{truncate "abcdef" 3}}|{{pad "x" 1 2}}|{{pad "" 1 1}}|', 'abc| x  ||'],
  ['{{printf "%s-%d-%v-%q" "a" 3 .Layers "q"}}', 'a-3-[l1 l2]-"q"'],
  ['{{printf "%5s|%-5s|%05d|%x" "ab" "cd" 42 "hi"}}', '   ab|cd   |00042|6869'],
  ['{{print 1 2 "a" "b" 3}}', '1 2ab3'],
  ['{{println "a" 1}}', 'a 1\n'],
  [
    '{{eq .Name "x"}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge "b" "a"}} {{eq 1 2 1}}',
    'false true true true false true true',
  ],
  ['{{and 1 0}} {{and 1 2}} {{or 0 ""}} {{or 0 "x"}} {{not ""}} {{not .Layers}}', '0 2  x true false'],
  ['{{slice .Name 0 6}} {{slice .Layers 1}}', 'docker [l2]'],
  ['{{1.5}} {{1e21}} {{0.00001}} {{3}} {{true}} {{1000000.0}} {{0x10}}', '1.5 1e+21 1e-05 3 true 1e+06 16'],
  ['{{"a\\tb\\u00e9"}} {{`raw\\n`}}', 'a\tbé raw\\n'],
  ['a {{- " b " -}} c', 'a b c'],
  ['a  {{- /* comment */ -}}  b {{/* x */}}c', 'ab c'],
  ['{{- .Name -}}\n', 'docker.io/library/busybox'],
  ['{{.}}'.replace('{{.}}', '{{.Layers}}'), '[l1 l2]'],
];

describe('Go text/template engine', () => {
  for (const [template, expected] of table) {
    it(`renders ${JSON.stringify(template)}`, () => {
      expect(executeGoTemplate(template, output, { name: 't' })).toBe(expected);
    });
  }

  it('prints structs and plain JSON data like fmt', () => {
    const data = new GoStruct('s', [
      { name: 'A', jsonName: 'A', omitEmpty: false, value: 'x' },
      { name: 'B', jsonName: 'B', omitEmpty: false, value: new GoSlice('[]string', ['1']) },
    ]);
    expect(executeGoTemplate('{{.}}', data)).toBe('{x [1]}');
    expect(executeGoTemplate('{{.}} {{.k.n}} {{.missing}}', { k: { n: 1.5 }, b: [1, 'x'], a: null })).toBe(
      'map[a:<nil> b:[1 x] k:map[n:1.5]] 1.5 <no value>',
    );
    expect(executeGoTemplate('{{json .}}', { b: [1, 'x'], a: null, h: '<&>' })).toBe(
      '{"a":null,"b":[1,"x"],"h":"<&>"}',
    );
  });

  it('reports execution errors like Go', () => {
    expect(() => executeGoTemplate('{{.Nope}}', output, { name: 'gantry inspect' })).toThrow(
      'template: gantry inspect:1:3: executing "gantry inspect" at <.Nope>: can\'t evaluate field Nope in type inspect.Output',
    );
    expect(() => executeGoTemplate('{{.Name.Foo}}', output, { name: 't' })).toThrow(
      "can't evaluate field Foo in type string",
    );
    expect(() => executeGoTemplate('{{index .Layers 5}}', output, { name: 't' })).toThrow(
      'error calling index: index out of range: 5',
    );
    expect(() => executeGoTemplate('{{range .Name}}{{end}}', output, { name: 't' })).toThrow(
      "range can't iterate over docker.io/library/busybox",
    );
    expect(() => executeGoTemplate('{{eq .Layers .Layers}}', output, { name: 't' })).toThrow(
      'non-comparable type',
    );
    expect(() => executeGoTemplate('{{lower .Layers}}', output, { name: 't' })).toThrow(
      'wrong type for value; expected string; got []string',
    );
    expect(() => executeGoTemplate('{{nil}}', output, { name: 't' })).toThrow('nil is not a command');
    expect(() => executeGoTemplate('{{.Pointer.Year}}', output, { name: 't' })).toThrow(
      'nil pointer evaluating *time.Time.Year',
    );
  });

  it('reports parse errors like Go', () => {
    const parseError = (text: string) => {
      try {
        GoTemplate.parse(text, { name: 't' });
      } catch (error) {
        expect(error).toBeInstanceOf(TemplateError);
        return (error as Error).message;
      }
      throw new Error(`${text} parsed`);
    };
    expect(parseError('{{json .}}{{nosuch .}}')).toBe('template: t:1: function "nosuch" not defined');
    expect(parseError('{{if}}x{{end}}')).toBe('template: t:1: missing value for if');
    expect(parseError('{{end}}')).toBe('template: t:1: unexpected {{end}}');
    expect(parseError('{{if .A}}x')).toBe('template: t:1: unexpected EOF');
    expect(parseError('a\n{{.A')).toBe('template: t:2: unclosed action');
    expect(parseError('{{"abc}}')).toBe('template: t:1: unterminated quoted string');
    expect(parseError('{{break}}')).toBe('template: t:1: {{break}} outside {{range}}');
    expect(parseError('{{define "x"}}{{end}}')).toContain('not supported');
  });

  it('parses once and runs many times', () => {
    const template = GoTemplate.parse('{{.}}!');
    expect(template.execute('a')).toBe('a!');
    expect(template.execute(new GoInt(2))).toBe('2!');
  });
});
