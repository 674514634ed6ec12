// A real OpenID Connect provider for Telechart's tests: panva/oidc-provider with one client and
// interactions that log in whoever `login_hint` names, without forms. Accounts ending in "-mfa"
// log in with a second factor (amr ["pwd", "otp"]); others with a password only (amr ["pwd"]).
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const redirectUri = process.env.REDIRECT_URI;
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'telechart',
    client_secret: 'telechart-test-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  pkce: { required: () => true },
  // amr rides on the openid scope so every id_token says how the person authenticated.
  claims: { acr: null, sid: null, iss: null, openid: ['sub', 'amr', 'auth_time'], profile: ['name'], fhirUser: ['fhirUser'] },
  scopes: ['openid', 'profile', 'fhirUser'],
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: `Dr ${id}`, fhirUser: `Practitioner/${id}` }),
  }),
  // End-user claims (fhirUser) go into the id_token too, as SMART-aware providers do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['telechart-test-cookie-key'] },
});

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    const account = details.params.login_hint || 'alice';
    result = { login: { accountId: account, amr: account.endsWith('-mfa') ? ['pwd', 'otp'] : ['pwd'] } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    result = { consent: { grantId: await grant.save() } };
  }
  ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});
