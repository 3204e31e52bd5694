import { Args, ID, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CurrentPrincipal } from '../auth/current-principal.decorator.js';
import type { Principal } from '../auth/principal.js';
import { RegisterDeviceInput } from './device.input.js';
import { DeviceModel } from './device.model.js';
import { DevicesService } from './devices.service.js';

/** The calling user's devices. */
@Resolver(() => DeviceModel)
export class DevicesResolver {
  constructor(private readonly devicesService: DevicesService) {}

  @Mutation(() => DeviceModel, { description: 'Registers a new device (MLS client) of the caller' })
  registerDevice(
    @CurrentPrincipal() principal: Principal,
    @Args('input', { nullable: true }) input?: RegisterDeviceInput,
  ): Promise<DeviceModel> {
    return this.devicesService.register(principal.userId, input ?? {});
  }

  @Query(() => [DeviceModel], { description: "The caller's devices, oldest first" })
  devices(@CurrentPrincipal() principal: Principal): Promise<DeviceModel[]> {
    return this.devicesService.list(principal.userId);
  }

  @Mutation(() => ID, { description: "Deletes one of the caller's devices; returns its id" })
  async deleteDevice(
    @CurrentPrincipal() principal: Principal,
    @Args('deviceId', { type: () => ID }) deviceId: string,
  ): Promise<string> {
    await this.devicesService.delete(principal.userId, deviceId);
    return deviceId;
  }
}
