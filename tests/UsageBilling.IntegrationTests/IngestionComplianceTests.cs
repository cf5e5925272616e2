using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;

namespace UsageBilling.IntegrationTests;

/// <summary><c>POST /api/v1/usage</c> over HTTP on Kestrel, with API keys from <see cref="IUsageApiKeys"/>, on both databases.</summary>
public abstract class IngestionComplianceTests(Provider provider) : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);

    private TestDatabase _database = null!;

    private AccountsHost Host { get; set; } = null!;

    private HttpClient Http { get; set; } = null!;

    private IUsageApiKeys Keys => Host.Get<IUsageApiKeys>();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(provider);
        Host = await AccountsHost.StartAsync(_database, Now, ingestion: o => (o.RequestsPerSecondPerKey, o.BurstPerKey) = (5, 5));
        Http = new HttpClient { BaseAddress = Host.BaseAddress };
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private async Task<HttpResponseMessage> PostAsync(string? secret, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/usage") { Content = JsonContent.Create(body) };
        if (secret is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        }

        return await Http.SendAsync(request, Ct);
    }

    private static object Event(Guid account, string key, long quantity = 1, string meter = "ai_messages") =>
        new { account_id = account, meter, quantity, idempotency_key = key, occurred_at = Now.AddMinutes(-1) };

    private async Task<int> EventCountAsync(Guid user)
    {
        await using var db = Host.CreateContext();
        return await db.UsageEvents.CountAsync(e => e.UserId == user, Ct);
    }

    private static async Task<JsonObject> ProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return (await response.Content.ReadFromJsonAsync<JsonObject>(Ct))!;
    }

    [Fact]
    public async Task Post_WithoutKey_Returns401AndRecordsNothing()
    {
        var user = await Host.NewUserAsync();

        using var response = await PostAsync(null, new { events = new[] { Event(user, "a") } });

        await ProblemAsync(response, HttpStatusCode.Unauthorized);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Equal(0, await EventCountAsync(user));
    }

    [Fact]
    public async Task Post_UnknownOrRevokedKey_Returns401()
    {
        var user = await Host.NewUserAsync();
        var key = await Keys.CreateAsync("worker", user, Ct);
        using (var ok = await PostAsync(key.Secret, new { events = new[] { Event(user, "before") } }))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.True(await Keys.RevokeAsync(key.Key.Id, Ct));
        using var revoked = await PostAsync(key.Secret, new { events = new[] { Event(user, "after") } });
        using var unknown = await PostAsync("ubk_" + new string('x', 43), new { events = new[] { Event(user, "other") } });

        Assert.Equal("Invalid API key", (await ProblemAsync(revoked, HttpStatusCode.Unauthorized))["title"]!.GetValue<string>());
        await ProblemAsync(unknown, HttpStatusCode.Unauthorized);
        Assert.Equal(1, await EventCountAsync(user));
        Assert.False(await Keys.RevokeAsync(key.Key.Id, Ct));
        Assert.True((await Keys.ListAsync(Ct)).Single().IsRevoked);
    }

    [Fact]
    public async Task Post_KeyOfAnotherAccount_Returns403AndRecordsNothingOfTheBatch()
    {
        var mine = await Host.NewUserAsync();
        var other = await Host.NewUserAsync();
        await using (var db = Host.CreateContext())
        {
            db.BillingCustomers.Add(new BillingCustomer { UserId = other, StripeCustomerId = "cus_other", CreatedAt = Now, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        var key = await Keys.CreateAsync("worker", mine, Ct);

        using var byAccount = await PostAsync(key.Secret, new { events = new[] { Event(mine, "m1"), Event(other, "o1") } });
        using var byCustomer = await PostAsync(key.Secret, new { events = new object[] { Event(mine, "m2"), new { customer_id = "cus_other", meter = "ai_messages", quantity = 1, idempotency_key = "o2" } } });
        using var unknownCustomer = await PostAsync(key.Secret, new { events = new object[] { new { customer_id = "cus_nobody", meter = "ai_messages", quantity = 1, idempotency_key = "o3" } } });

        await ProblemAsync(byAccount, HttpStatusCode.Forbidden);
        await ProblemAsync(byCustomer, HttpStatusCode.Forbidden);
        await ProblemAsync(unknownCustomer, HttpStatusCode.Forbidden);
        Assert.Equal(0, await EventCountAsync(mine));
        Assert.Equal(0, await EventCountAsync(other));
    }

    [Fact]
    public async Task Post_BatchWithDuplicatesAndBadRows_AnswersPerItemAndRecordsTheGoodOnes()
    {
        var a = await Host.NewUserAsync();
        var b = await Host.NewUserAsync();
        await using (var db = Host.CreateContext())
        {
            db.BillingCustomers.Add(new BillingCustomer { UserId = b, StripeCustomerId = "cus_b", CreatedAt = Now, UpdatedAt = Now });
            await db.SaveChangesAsync(Ct);
        }

        await Host.Get<IUsageLimits>().SetCapsAsync(a, "api_calls", null, 2, Ct);
        var key = await Keys.CreateAsync("all accounts", null, Ct);
        Assert.Null(key.Key.UserId);
        Assert.StartsWith("ubk_", key.Secret, StringComparison.Ordinal);
        using (var first = await PostAsync(key.Secret, new { events = new[] { Event(a, "k1", 5) } }))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        using var response = await PostAsync(key.Secret, new
        {
            events = new object?[]
            {
                Event(a, "k1", 5),                                                                              // 0 duplicate of the first request
                Event(a, "k2", 7),                                                                              // 1 recorded
                Event(a, "k2", 7),                                                                              // 2 duplicate within the batch
                new { customer_id = "cus_b", meter = "ai_messages", quantity = 3, idempotency_key = "k3" },    // 3 recorded for b
                Event(a, "k4", 1, "no_such_meter"),                                                             // 4 unknown meter
                Event(a, "k5", 0),                                                                              // 5 bad quantity
                new { account_id = a, meter = "ai_messages", quantity = 1 },                                   // 6 no idempotency key
                new { account_id = a, customer_id = "cus_b", meter = "ai_messages", idempotency_key = "k7" },  // 7 both ids
                new { customer_id = "cus_nobody", meter = "ai_messages", idempotency_key = "k8" },             // 8 unknown customer
                Event(a, "k1", 6),                                                                              // 9 key reused for other content
                Event(a, "c1", 1, "api_calls"),                                                                 // 10 recorded
                Event(a, "c2", 1, "api_calls"),                                                                 // 11 recorded
                Event(a, "c3", 1, "api_calls"),                                                                 // 12 over the account's cap of 2
                null,                                                                                           // 13 null
                new { account_id = Guid.NewGuid(), meter = "ai_messages", idempotency_key = "k14" },           // 14 no such account
            },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = (await response.Content.ReadFromJsonAsync<JsonObject>(Ct))!;
        var results = body["results"]!.AsArray().Select(r => (Status: r!["status"]!.GetValue<string>(), Code: r["code"]?.GetValue<string>())).ToList();
        Assert.Equal(
            new[]
            {
                ("duplicate", (string?)null), ("recorded", null), ("duplicate", null), ("recorded", null), ("rejected", "unknown_meter"),
                ("rejected", "invalid_quantity"), ("rejected", "invalid_idempotency_key"), ("rejected", "invalid_event"), ("rejected", "unknown_account"),
                ("rejected", "idempotency_conflict"), ("recorded", null), ("recorded", null), ("rejected", "limit_exceeded"), ("rejected", "invalid_event"),
                ("rejected", "unknown_account"),
            },
            results);
        Assert.Equal((4, 2, 9), (body["recorded"]!.GetValue<int>(), body["duplicates"]!.GetValue<int>(), body["rejected"]!.GetValue<int>()));
        Assert.Equal(body["results"]![1]!["event_id"]!.GetValue<Guid>(), body["results"]![2]!["event_id"]!.GetValue<Guid>());
        Assert.False(string.IsNullOrEmpty(body["results"]![12]!["reason"]!.GetValue<string>()));
        await using var check = Host.CreateContext();
        var stored = await check.UsageEvents.Where(e => e.UserId == a || e.UserId == b).Select(e => new { e.UserId, e.Meter, e.Quantity }).ToListAsync(Ct);
        Assert.Equal(12, stored.Where(e => e.UserId == a && e.Meter == "ai_messages").Sum(e => e.Quantity));
        Assert.Equal(2, stored.Count(e => e.UserId == a && e.Meter == "api_calls"));
        Assert.Equal(3, stored.Where(e => e.UserId == b).Sum(e => e.Quantity));
    }

    [Fact]
    public async Task Post_WholeBodyProblems_Return400ProblemDetailsAndRecordNothing()
    {
        var user = await Host.NewUserAsync();
        var key = await Keys.CreateAsync("worker", user, Ct);
        using var malformed = new HttpRequestMessage(HttpMethod.Post, "/api/v1/usage") { Content = new StringContent("{\"events\": [", Encoding.UTF8, "application/json") };
        malformed.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Secret);

        using var broken = await Http.SendAsync(malformed, Ct);
        using var empty = await PostAsync(key.Secret, new { events = Array.Empty<object>() });
        using var missing = await PostAsync(key.Secret, new { items = new[] { Event(user, "x") } });
        using var tooMany = await PostAsync(key.Secret, new { events = Enumerable.Range(0, 1001).Select(i => Event(user, $"e{i}")).ToArray() });

        await ProblemAsync(broken, HttpStatusCode.BadRequest);
        await ProblemAsync(empty, HttpStatusCode.BadRequest);
        await ProblemAsync(missing, HttpStatusCode.BadRequest);
        Assert.Contains("1001", (await ProblemAsync(tooMany, HttpStatusCode.BadRequest))["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(0, await EventCountAsync(user));
    }

    [Fact]
    public async Task Post_ThousandEvents_AllRecorded()
    {
        var user = await Host.NewUserAsync();
        var key = await Keys.CreateAsync("worker", user, Ct);

        using var response = await PostAsync(key.Secret, new { events = Enumerable.Range(0, 1000).Select(i => Event(user, $"e{i}", 2)).ToArray() });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1000, (await response.Content.ReadFromJsonAsync<JsonObject>(Ct))!["recorded"]!.GetValue<int>());
        Assert.Equal(1000, await EventCountAsync(user));
    }

    [Fact]
    public async Task Post_BodyOverOneMebibyte_Returns413WithoutReadingIt()
    {
        var user = await Host.NewUserAsync();
        var key = await Keys.CreateAsync("worker", user, Ct);
        var big = JsonSerializer.Serialize(new { events = new[] { new { account_id = user, meter = "ai_messages", idempotency_key = new string('k', 1024 * 1024) } } });

        using var declared = new HttpRequestMessage(HttpMethod.Post, "/api/v1/usage") { Content = new StringContent(big, Encoding.UTF8, "application/json") };
        declared.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Secret);
        using var response = await Http.SendAsync(declared, Ct);
        using var chunked = new HttpRequestMessage(HttpMethod.Post, "/api/v1/usage") { Content = new ChunkedContent(Encoding.UTF8.GetBytes(big)) };
        chunked.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Secret);
        using var chunkedResponse = await Http.SendAsync(chunked, Ct);

        await ProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
        await ProblemAsync(chunkedResponse, HttpStatusCode.RequestEntityTooLarge);
        Assert.True(Host.Probe.LastRead <= (1024 * 1024) + (64 * 1024), $"read {Host.Probe.LastRead} bytes");
        Assert.Equal(0, await EventCountAsync(user));
    }

    [Fact]
    public async Task Post_OverTheKeysRate_Returns429WithRetryAfter_OtherKeysUnaffected()
    {
        var user = await Host.NewUserAsync();
        var busy = await Keys.CreateAsync("busy", user, Ct);
        var calm = await Keys.CreateAsync("calm", user, Ct);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 12; i++)
        {
            using var response = await PostAsync(busy.Secret, new { events = new[] { Event(user, $"b{i}") } });
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                Assert.NotNull(response.Headers.RetryAfter);
            }
        }

        using var other = await PostAsync(calm.Secret, new { events = new[] { Event(user, "c") } });

        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task CreateKey_ForUnknownAccount_ThrowsUnknownUser()
    {
        await Assert.ThrowsAsync<UnknownUserException>(() => Keys.CreateAsync("worker", Guid.NewGuid(), Ct));
        await Assert.ThrowsAsync<ArgumentException>(() => Keys.CreateAsync(" ", null, Ct));
        Assert.Empty(await Keys.ListAsync(Ct));
    }

    /// <summary>A body sent with chunked framing (no Content-Length).</summary>
    private sealed class ChunkedContent(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}

public sealed class SqliteIngestionTests() : IngestionComplianceTests(Provider.Sqlite);

public sealed class PostgresIngestionTests() : IngestionComplianceTests(Provider.Postgres);
