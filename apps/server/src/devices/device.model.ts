import { Field, ID, Int, ObjectType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';

/** One device (MLS client) of the calling user. */
@ObjectType('Device')
export class DeviceModel {
  @Field(() => ID, { description: '16 lower-case hex digits' })
  id!: string;

  @Field({ description: 'MLS basic-credential identity: `<userId>:<deviceId>@<domain>`' })
  identity!: string;

  @Field()
  name!: string;

  @Field(() => BytesScalar, {
    nullable: true,
    description: 'MLS signature public key, bound at registration or first key-package upload',
  })
  signatureKey!: Buffer | null;

  @Field(() => Int, { description: 'Fewer available key packages than this is "low"' })
  keyPackageLowWater!: number;

  @Field()
  createdAt!: Date;
}
