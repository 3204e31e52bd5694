import { Field, ID, ObjectType } from '@nestjs/graphql';

/** A Parley user as the API shows it. */
@ObjectType('User')
export class UserModel {
  @Field(() => ID)
  id!: string;

  @Field(() => String, {
    nullable: true,
    description: 'Null for users from an app identity provider',
  })
  username!: string | null;

  @Field()
  createdAt!: Date;
}

/** A bearer token and the user it is for. */
@ObjectType('AuthPayload')
export class AuthPayloadModel {
  @Field({
    description: 'Send as `Authorization: Bearer <token>`, or in graphql-ws connectionParams',
  })
  token!: string;

  @Field(() => UserModel)
  user!: UserModel;
}
