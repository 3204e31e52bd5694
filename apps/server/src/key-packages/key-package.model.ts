import { Field, ID, Int, ObjectType } from '@nestjs/graphql';
import { BytesScalar } from '../common/scalars/bytes.scalar.js';

/** How many key packages a device has left. */
@ObjectType('KeyPackageCount')
export class KeyPackageCountModel {
  @Field(() => Int, { description: 'Unclaimed, unexpired, not counting the last-resort one' })
  available!: number;

  @Field({ description: 'Whether a valid last-resort key package is stored' })
  lastResort!: boolean;

  @Field(() => Int)
  lowWater!: number;

  @Field({ description: 'available < lowWater: time to upload more' })
  low!: boolean;
}

/** A device of a claimed user. */
@ObjectType('DeviceRef')
export class DeviceRefModel {
  @Field(() => ID)
  userId!: string;

  @Field(() => ID)
  deviceId!: string;

  @Field({ description: 'MLS identity of the device' })
  identity!: string;
}

/** One key package handed out for one device. */
@ObjectType('ClaimedKeyPackage')
export class ClaimedKeyPackageModel extends DeviceRefModel {
  @Field(() => BytesScalar, { description: 'MLSMessage (wire format mls_key_package)' })
  keyPackage!: Buffer;

  @Field(() => BytesScalar, { description: 'KeyPackageRef (RFC 9420 §5.2)' })
  ref!: Buffer;

  @Field({ description: 'The device had no other key package; this one is reused, not consumed' })
  lastResort!: boolean;
}

/** The result of a claim: a key package per device, and who could not be served. */
@ObjectType('KeyPackageClaim')
export class KeyPackageClaimModel {
  @Field(() => [ClaimedKeyPackageModel])
  keyPackages!: ClaimedKeyPackageModel[];

  @Field(() => [DeviceRefModel], {
    description: 'Devices with no key package at all, not even a last-resort one',
  })
  exhaustedDevices!: DeviceRefModel[];

  @Field(() => [ID], { description: 'Users with no device other than the claiming one' })
  usersWithoutDevices!: string[];
}
