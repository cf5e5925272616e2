namespace UsageBilling.Storage;

/// <summary>The persistence of ingestion API keys (hashes only). Implemented by the EF Core package.</summary>
public interface IUsageApiKeyStore
{
    /// <summary>Stores a new key.</summary>
    /// <param name="key">The key.</param>
    /// <param name="secretHash">Lowercase hex SHA-256 of its secret.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    /// <exception cref="UnknownUserException">The key's account does not exist.</exception>
    Task CreateAsync(UsageApiKeyInfo key, string secretHash, CancellationToken cancellationToken);

    /// <summary>All keys, newest first.</summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The keys.</returns>
    Task<IReadOnlyList<UsageApiKeyInfo>> ListAsync(CancellationToken cancellationToken);

    /// <summary>Revokes a key that is not revoked yet.</summary>
    /// <param name="keyId">The key.</param>
    /// <param name="at">When.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>Whether a key changed.</returns>
    Task<bool> RevokeAsync(Guid keyId, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>The key with this secret hash, revoked or not.</summary>
    /// <param name="secretHash">Lowercase hex SHA-256 of the secret.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The key, or <see langword="null"/>.</returns>
    Task<UsageApiKeyInfo?> FindByHashAsync(string secretHash, CancellationToken cancellationToken);
}
