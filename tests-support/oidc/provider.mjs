// A real OpenID Connect provider for Telechart's tests: panva/oidc-provider with interactions
// that log in whoever `login_hint` names, without forms. Accounts ending in "-mfa" log in with a
// second factor (amr ["pwd", "otp"]); others with a password only (amr ["pwd"]).
//
// Two clients: `telechart` (confidential; people's login) and `telechart-smart` (public, PKCE,
// refresh tokens; the SMART client). A small shim serves `/.well-known/smart-configuration` from
// the provider's own discovery, as a SMART authorization server publishes it.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const redirectUri = process.env.REDIRECT_URI;
const smartRedirectUri = process.env.SMART_REDIRECT_URI || 'http://127.0.0.1:9/launch/callback';
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
  }, {
    client_id: 'telechart-smart',
    redirect_uris: [smartRedirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'RS256',
  }],
  // Refresh tokens for the SMART client whenever it may refresh (SMART's offline_access needs no
  // prompt=consent); oidc-provider rotates them on use for public clients.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: 300, IdToken: 300, RefreshToken: 86400 },
  pkce: { required: () => true },
  // amr rides on the openid scope so every id_token says how the person authenticated.
  claims: { acr: null, sid: null, iss: null, openid: ['sub', 'amr', 'auth_time'], profile: ['name'], fhirUser: ['fhirUser'] },
  scopes: ['openid', 'profile', 'fhirUser', 'offline_access', 'launch/patient', 'user/*.rs'],
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
  if (ctx.path !== '/.well-known/smart-configuration') return next();
  const openid = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  ctx.type = 'application/json';
  ctx.body = {
    issuer: openid.issuer,
    jwks_uri: openid.jwks_uri,
    authorization_endpoint: openid.authorization_endpoint,
    token_endpoint: openid.token_endpoint,
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
    scopes_supported: openid.scopes_supported,
    capabilities: ['launch-standalone', 'client-public', 'sso-openid-connect', 'permission-offline'],
  };
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
