import { ValidationPipe, type ValidationError } from '@nestjs/common';
import { DomainError } from './domain.errors.js';

function describe(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((error) => [
    ...Object.values(error.constraints ?? {}).map((message) => `${prefix}${message}`),
    ...describe(error.children ?? [], `${prefix}${error.property}.`),
  ]);
}

/** class-validator on every input, failing with BAD_USER_INPUT like any other domain error. */
export const validationPipe = new ValidationPipe({
  transform: false,
  forbidUnknownValues: false,
  exceptionFactory: (errors) => new DomainError('BAD_USER_INPUT', describe(errors).join('; ')),
});
