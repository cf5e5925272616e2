using System.Security.Cryptography;
using System.Text;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// API keys for recording usage over HTTP (<c>POST /api/v1/usage</c>). A key is a random 256-bit secret shown once
/// when created; only its SHA-256 is stored. A key is scoped to one account or to all.
/// </summary>
public interface IUsageApiKeys
{
    /// <summary>Creates a key. The returned secret is never stored nor shown again.</summary>
    /// <param name="name">What uses the key (1–200 characters), for operators.</param>
    /// <param name="userId">The one account the key may record for, or <see langword="null"/> for every account.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The key and its secret.</returns>
    /// <exception cref="ArgumentException">The name is blank or too long.</exception>
    /// <exception cref="UnknownUserException">No such account.</exception>
    Task<CreatedUsageApiKey> CreateAsync(string name, Guid? userId = null, CancellationToken cancellationToken = default);

    /// <summary>All keys, newest first (revoked ones included), without secrets.</summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The keys.</returns>
    Task<IReadOnlyList<UsageApiKeyInfo>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>Revokes a key: from then on it authenticates nothing.</summary>
    /// <param name="keyId">The key.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="false"/> when there is no such key or it was already revoked.</returns>
    Task<bool> RevokeAsync(Guid keyId, CancellationToken cancellationToken = default);

    /// <summary>The live key a secret belongs to.</summary>
    /// <param name="secret">The secret as the caller presented it.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The key, or <see langword="null"/> when the secret is unknown or its key revoked.</returns>
    Task<UsageApiKeyInfo?> AuthenticateAsync(string secret, CancellationToken cancellationToken = default);
}

/// <summary>An API key as operators see it (never its secret).</summary>
/// <param name="Id">The key id.</param>
/// <param name="Name">What uses it.</param>
/// <param name="Prefix">The secret's first characters, to tell keys apart.</param>
/// <param name="UserId">The one account it may record for, or <see langword="null"/> for all.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="RevokedAt">When it was revoked, if it was.</param>
public sealed record UsageApiKeyInfo(Guid Id, string Name, string Prefix, Guid? UserId, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt)
{
    /// <summary>Whether the key was revoked.</summary>
    public bool IsRevoked => RevokedAt is not null;

    /// <summary>Whether the key may record usage for <paramref name="userId"/>.</summary>
    /// <param name="userId">The account.</param>
    /// <returns><see langword="true"/> for an all-accounts key or the key's own account.</returns>
    public bool Allows(Guid userId) => UserId is null || UserId == userId;
}

/// <summary>A key just created, with the secret shown this once.</summary>
/// <param name="Key">The key.</param>
/// <param name="Secret">The secret (<c>ubk_…</c>); send it as <c>Authorization: Bearer &lt;secret&gt;</c>.</param>
public sealed record CreatedUsageApiKey(UsageApiKeyInfo Key, string Secret);

/// <summary>Creates secrets and hashes them; the store keeps only hashes.</summary>
internal sealed class UsageApiKeys(IUsageApiKeyStore store, TimeProvider time) : IUsageApiKeys
{
    private const string SecretPrefix = "ubk_";

    public async Task<CreatedUsageApiKey> CreateAsync(string name, Guid? userId = null, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Trim().Length > 200)
        {
            throw new ArgumentException("An API key needs a name of 1–200 characters (what uses it).", nameof(name));
        }

        var secret = SecretPrefix + Base64Url(RandomNumberGenerator.GetBytes(32));
        var now = time.GetUtcNow();
        var key = new UsageApiKeyInfo(Guid.CreateVersion7(now), name.Trim(), secret[..12], userId, now, null);
        await store.CreateAsync(key, Hash(secret), cancellationToken).ConfigureAwait(false);
        return new CreatedUsageApiKey(key, secret);
    }

    public Task<IReadOnlyList<UsageApiKeyInfo>> ListAsync(CancellationToken cancellationToken = default) => store.ListAsync(cancellationToken);

    public Task<bool> RevokeAsync(Guid keyId, CancellationToken cancellationToken = default) => store.RevokeAsync(keyId, time.GetUtcNow(), cancellationToken);

    public async Task<UsageApiKeyInfo?> AuthenticateAsync(string secret, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(secret) || !secret.StartsWith(SecretPrefix, StringComparison.Ordinal) || secret.Length > 100)
        {
            return null;
        }

        var key = await store.FindByHashAsync(Hash(secret), cancellationToken).ConfigureAwait(false);
        return key is { IsRevoked: false } ? key : null;
    }

    /// <summary>Lowercase hex SHA-256 of the secret: the secret is 256 random bits, so a fast hash is enough.</summary>
    internal static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
