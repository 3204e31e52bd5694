import { SetMetadata } from '@nestjs/common';

/** Metadata key of {@link Public}. */
export const IS_PUBLIC = 'parley:public';

/** Marks an operation that needs no bearer token (sign-up, sign-in, health). */
export const Public = () => SetMetadata(IS_PUBLIC, true);
