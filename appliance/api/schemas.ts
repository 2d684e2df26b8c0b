// JSON schemas shared by the API routes (fastify validates with ajv; they also make /docs/json).
export const macParam = {
  type: 'object', required: ['mac'], additionalProperties: false,
  properties: { mac: { type: 'string', pattern: '^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$', description: 'MAC address, e.g. 52:54:00:12:34:56' } },
} as const;
export const idParam = { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'integer', minimum: 1 } } } as const;
export const nameParam = { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 128 } } } as const;
export const nullableString = (max: number) => ({ anyOf: [{ type: 'string', minLength: 1, maxLength: max }, { type: 'null' }] });
export const bootPolicy = { type: 'string', enum: ['auto', 'local'], description: 'auto: boot a task when there is one, else the local disk; local: always the local disk' } as const;
export const startRule = {
  oneOf: [
    { type: 'object', required: ['kind'], additionalProperties: false, properties: { kind: { const: 'all' } } },
    { type: 'object', required: ['kind', 'at'], additionalProperties: false, properties: { kind: { const: 'deadline' }, at: { type: 'string', format: 'date-time' } } },
    { type: 'object', required: ['kind', 'seconds'], additionalProperties: false, properties: { kind: { const: 'grace' }, seconds: { type: 'integer', minimum: 0, maximum: 86400 } } },
  ],
  description: 'when a deploy session starts: all joined, at a deadline, or first join + grace seconds',
} as const;
export const errorBody = { type: 'object', properties: { error: { type: 'string' }, code: { type: 'string' } } } as const;
