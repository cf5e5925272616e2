using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary><see cref="IUsageApiKeyStore"/> over any DbContext that applied the UsageBilling model.</summary>
/// <typeparam name="TContext">The app's context.</typeparam>
internal sealed class EfUsageApiKeyStore<TContext>(IDbContextFactory<TContext> contexts) : IUsageApiKeyStore
    where TContext : DbContext
{
    public async Task CreateAsync(UsageApiKeyInfo key, string secretHash, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        context.Set<UsageApiKey>().Add(new UsageApiKey
        {
            Id = key.Id,
            Name = key.Name,
            Prefix = key.Prefix,
            SecretHash = secretHash,
            UserId = key.UserId,
            CreatedAt = key.CreatedAt,
        });
        try
        {
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateException ex) when (key.UserId is not null)
        {
            // The only constraint a fresh 256-bit secret can break is the account's foreign key.
            throw new UnknownUserException($"User {key.UserId} does not exist; an API key can only be scoped to an existing account.", ex);
        }
    }

    public async Task<IReadOnlyList<UsageApiKeyInfo>> ListAsync(CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var rows = await context.Set<UsageApiKey>().AsNoTracking().OrderByDescending(k => k.CreatedAt).ThenByDescending(k => k.Id)
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        return [.. rows.Select(ToInfo)];
    }

    public async Task<bool> RevokeAsync(Guid keyId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<UsageApiKey>().Where(k => k.Id == keyId && k.RevokedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(k => k.RevokedAt, at), cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<UsageApiKeyInfo?> FindByHashAsync(string secretHash, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var row = await context.Set<UsageApiKey>().AsNoTracking().SingleOrDefaultAsync(k => k.SecretHash == secretHash, cancellationToken).ConfigureAwait(false);
        return row is null ? null : ToInfo(row);
    }

    private static UsageApiKeyInfo ToInfo(UsageApiKey k) => new(k.Id, k.Name, k.Prefix, k.UserId, k.CreatedAt, k.RevokedAt);
}
