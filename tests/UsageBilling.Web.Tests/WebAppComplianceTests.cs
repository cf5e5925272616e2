using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>The app's facts, stated once and run on SQLite and on PostgreSQL.</summary>
public abstract class WebAppComplianceTests<TApp>(TApp app) : IClassFixture<TApp>
    where TApp : WebApp
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SignUp_CreatesAccountAndStripeCustomer()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;

        await using var db = app.CreateDbContext();
        var customer = await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct);
        Assert.StartsWith("cus_", customer.StripeCustomerId, StringComparison.Ordinal);
        var stripeCustomer = await app.StripeClient.V1.Customers.GetAsync(customer.StripeCustomerId, cancellationToken: Ct);
        Assert.Equal(userId.ToString(), stripeCustomer.Metadata[UsageBillingMetadata.UserIdKey]);
        Assert.Null(customer.PlanId);
        Assert.Equal(HttpStatusCode.OK, (await session.Client.GetAsync("/usage", Ct)).StatusCode);
    }

    [Fact]
    public async Task SignOutThenSignIn_RequiresPasswordAndRestoresAccess()
    {
        var email = $"user-{Guid.NewGuid():N}@example.com";
        var (session, _) = await app.SignUpAsync(email);
        using var __ = session;
        var home = await session.GetPageAsync("/");
        var logout = await session.PostFormAsync("/account/logout", new() { ["__RequestVerificationToken"] = home.QuerySelector("form[action='/account/logout'] input[name='__RequestVerificationToken']")!.GetAttribute("value")! });
        Assert.Equal(HttpStatusCode.Redirect, logout.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await session.Client.GetAsync("/api/usage", Ct)).StatusCode);

        var wrong = await session.LoginAsync(email, "wrong-password-1");
        Assert.Equal(HttpStatusCode.OK, wrong.StatusCode);
        Assert.Contains("Wrong e-mail or password", await wrong.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        var right = await session.LoginAsync(email, "correct-horse-1");
        Assert.Equal(HttpStatusCode.Redirect, right.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await session.Client.GetAsync("/api/usage", Ct)).StatusCode);
    }

    [Fact]
    public async Task ChoosePlan_CreatesHybridSubscriptionAndItemRows()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;

        var page = await session.ChoosePlanAsync("starter");

        Assert.Equal("Starter", page.QuerySelector("[data-testid='current-plan']")?.TextContent);
        await using var db = app.CreateDbContext();
        Assert.Equal("starter", (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId);
        var items = await db.SubscriptionItems.Where(i => i.UserId == userId).ToListAsync(Ct);
        Assert.Equal(2, items.Count);
        Assert.Single(items, i => i.Meter == "ai_messages");
        Assert.Single(items, i => i.Meter is null);
        Assert.All(items, i => Assert.Equal("active", i.Status));
        Assert.All(items, i => Assert.True(i.CurrentPeriodEnd > i.CurrentPeriodStart));

        var subscription = await app.StripeClient.V1.Subscriptions.GetAsync(items[0].SubscriptionId, cancellationToken: Ct);
        Assert.Equal(2, subscription.Items.Data.Count);
        var metered = Assert.Single(subscription.Items.Data, i => i.Price.Recurring.UsageType == "metered");
        Assert.Equal("tiered", metered.Price.BillingScheme);
        Assert.Equal("licensed", Assert.Single(subscription.Items.Data, i => i.Price.Recurring.UsageType == "licensed").Price.Recurring.UsageType);

        var usage = await session.GetUsageAsync();
        Assert.Equal("starter", usage.PlanId);
        Assert.Equal(100, usage.Meters.Single(m => m.Meter == "ai_messages").Included);
    }

    [Fact]
    public async Task ChangePlan_CancelsOldSubscriptionAndKeepsOnlyNewItems()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await using var db1 = app.CreateDbContext();
        var oldSubscription = (await db1.SubscriptionItems.FirstAsync(i => i.UserId == userId, Ct)).SubscriptionId;

        await session.ChoosePlanAsync("pro");

        await using var db = app.CreateDbContext();
        var items = await db.SubscriptionItems.Where(i => i.UserId == userId).ToListAsync(Ct);
        Assert.Equal(2, items.Count);
        Assert.All(items, i => Assert.NotEqual(oldSubscription, i.SubscriptionId));
        Assert.Equal("pro", (await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId);
        Assert.Equal("canceled", (await app.StripeClient.V1.Subscriptions.GetAsync(oldSubscription, cancellationToken: Ct)).Status);
    }

    [Fact]
    public async Task Assistant_RecordsBeforeAnswering()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");

        var page = await session.SendMessageAsync("What is the answer?");

        Assert.Contains("42", page.QuerySelector("[data-testid='assistant-reply']")?.TextContent, StringComparison.Ordinal);
        await using var db = app.CreateDbContext();
        var recorded = await db.UsageEvents.SingleAsync(e => e.UserId == userId, Ct);
        Assert.Equal("ai_messages", recorded.Meter);
        Assert.Equal(1, recorded.Quantity);
        Assert.StartsWith("assistant:", recorded.IdempotencyKey, StringComparison.Ordinal);
        Assert.Equal("1", page.QuerySelector("[data-testid='used-ai_messages']")?.TextContent);
    }

    [Fact]
    public async Task Assistant_DoubleSubmittedForm_RecordsOnce()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        var form = await session.AssistantFormAsync("hello twice");

        var first = await session.PostAssistantAsync(form);
        var second = await session.PostAssistantAsync(form);

        Assert.NotNull(first.QuerySelector("[data-testid='assistant-reply']"));
        Assert.NotNull(second.QuerySelector("[data-testid='assistant-reply']"));
        await using var db = app.CreateDbContext();
        Assert.Equal(1, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));

        // A new page load gets a new request id: that one counts.
        await session.SendMessageAsync("hello again");
        Assert.Equal(2, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task Assistant_OverHardLimit_RefusesAndRecordsNothing()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("tiny");
        var limit = int.Parse(WebApp.TinyHardLimit, System.Globalization.CultureInfo.InvariantCulture);
        for (var i = 0; i < limit; i++)
        {
            var ok = await session.SendMessageAsync($"message {i}");
            Assert.Null(ok.QuerySelector("[data-testid='assistant-error']"));
        }

        var refused = await session.SendMessageAsync("one too many");

        Assert.Contains("your plan allows", refused.QuerySelector("[data-testid='assistant-error']")?.TextContent, StringComparison.Ordinal);
        Assert.Null(refused.QuerySelector("[data-testid='assistant-reply']"));
        await using var db = app.CreateDbContext();
        Assert.Equal(limit, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));

        var api = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "via api", requestId = Guid.NewGuid().ToString("N") }, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, api.StatusCode);
        Assert.Equal("application/problem+json", api.Content.Headers.ContentType?.MediaType);
        Assert.Equal(limit, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task AssistantApi_BurstAtTheLimit_NeverOvershoots()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("tiny");
        var limit = int.Parse(WebApp.TinyHardLimit, System.Globalization.CultureInfo.InvariantCulture);
        for (var i = 0; i < limit - 1; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"m{i}", requestId = Guid.NewGuid().ToString("N") }, Ct)).StatusCode);
        }

        var burst = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"burst {i}", requestId = Guid.NewGuid().ToString("N") }, Ct)));

        Assert.Equal(1, burst.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(5, burst.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
        await using var db = app.CreateDbContext();
        Assert.Equal(limit, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task AssistantApi_SameRequestIdTwice_RecordsOnce()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        var body = new { message = "api hello", requestId = Guid.NewGuid().ToString("N") };

        var first = await session.Client.PostAsJsonAsync("/api/assistant/messages", body, Ct);
        var second = await session.Client.PostAsJsonAsync("/api/assistant/messages", body, Ct);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        await using var db = app.CreateDbContext();
        Assert.Equal(1, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
        var missingId = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "no id" }, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, missingId.StatusCode);
    }

    [Fact]
    public async Task AssistantApi_OverTheLimit_Answers429ProblemWithLimitUsedAndResetsAt_AndThePageSaysUntilWhen()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("tiny");
        var limit = int.Parse(WebApp.TinyHardLimit, System.Globalization.CultureInfo.InvariantCulture);
        for (var i = 0; i < limit; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"m{i}", requestId = Guid.NewGuid().ToString("N") }, Ct)).StatusCode);
        }

        var refused = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "one more", requestId = Guid.NewGuid().ToString("N") }, Ct);

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        Assert.NotNull(refused.Headers.RetryAfter);
        var problem = JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!;
        var usage = await session.GetUsageAsync();
        var meter = usage.Meters.Single(m => m.Meter == "ai_messages");
        Assert.Equal(limit, problem["limit"]!.GetValue<decimal>());
        Assert.Equal(limit, problem["used"]!.GetValue<decimal>());
        Assert.Equal(meter.PeriodEnd, problem["resetsAt"]!.GetValue<DateTimeOffset>());
        Assert.Equal("HardLimit", problem["limitKind"]!.GetValue<string>());
        await using (var db = app.CreateDbContext())
        {
            Assert.Equal(limit, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
        }

        var page = await session.GetPageAsync("/usage");
        Assert.Contains("nothing more can be used until", page.QuerySelector("[data-testid='limit-reached-ai_messages']")?.TextContent, StringComparison.Ordinal);
        Assert.Equal(meter.PeriodEnd.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture), page.QuerySelector("[data-testid='resets-at-ai_messages']")?.TextContent);

        // Default thresholds: 80 % and 100 % of the 5 included, 100 % of the limit; the newest is the banner.
        Assert.Contains("100 % of your AI messages limit", page.QuerySelector("[data-testid='alert-banner']")?.TextContent, StringComparison.Ordinal);
        var alerts = JsonNode.Parse(await session.Client.GetStringAsync("/api/alerts", Ct))!.AsArray();
        Assert.Equal(3, alerts.Count);
    }

    [Fact]
    public async Task AssistantApi_SameRequestIdWithAnotherMessage_Answers409AndRecordsNothing()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        var requestId = Guid.NewGuid().ToString("N");
        var first = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "first message", requestId }, Ct);
        var replay = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "first message", requestId }, Ct);

        var other = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "a different message", requestId }, Ct);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, replay.StatusCode);
        Assert.Equal((await first.Content.ReadFromJsonAsync<JsonObject>(Ct))!["reply"]!.GetValue<string>(), (await replay.Content.ReadFromJsonAsync<JsonObject>(Ct))!["reply"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.Conflict, other.StatusCode);
        Assert.Equal("application/problem+json", other.Content.Headers.ContentType?.MediaType);
        await using var db = app.CreateDbContext();
        Assert.Equal(1, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task AssistantApi_WithoutPlan_HasTheFreeAllowanceThen429()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        var results = new List<HttpStatusCode>();
        for (var i = 0; i < 21; i++)
        {
            results.Add((await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"free {i}", requestId = Guid.NewGuid().ToString("N") }, Ct)).StatusCode);
        }

        Assert.Equal(20, results.Count(r => r == HttpStatusCode.OK));
        Assert.Equal(HttpStatusCode.TooManyRequests, results[^1]);
        await using var db = app.CreateDbContext();
        Assert.Equal(20, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task LimitsApi_CustomerSpendCap_StopsUsageThere_AndBadInputIs400()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");

        var tooHigh = await session.Client.PutAsJsonAsync("/api/limits/ai_messages", new { spendCap = 25.01m }, Ct);
        var badThreshold = await session.Client.PutAsJsonAsync("/api/limits/ai_messages", new { alertThresholds = new[] { "percent_of_included:-5" } }, Ct);
        var unknownMeter = await session.Client.PutAsJsonAsync("/api/limits/gpu", new { spendCap = 1m }, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, tooHigh.StatusCode);
        Assert.Contains("spend limit", await tooHigh.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, badThreshold.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, unknownMeter.StatusCode);

        // Starter: 100 included, then 0.02 each; a 0.04 cap allows 102 messages.
        var saved = await session.Client.PutAsJsonAsync("/api/limits/ai_messages", new { spendCap = 0.04m, alertThresholds = new[] { "amount:0.02" } }, Ct);
        Assert.Equal(HttpStatusCode.OK, saved.StatusCode);
        await using (var db = app.CreateDbContext())
        {
            var now = DateTimeOffset.UtcNow;
            db.UsageEvents.AddRange(Enumerable.Range(0, 100).Select(i => new UsageBilling.EntityFrameworkCore.Entities.UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = "ai_messages", Quantity = 1, OccurredAt = now, CreatedAt = now }));
            await db.SaveChangesAsync(Ct);
        }

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            statuses.Add((await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = $"paid {i}", requestId = Guid.NewGuid().ToString("N") }, Ct)).StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var alerts = JsonNode.Parse(await session.Client.GetStringAsync("/api/alerts", Ct))!.AsArray();
        Assert.Contains(alerts, a => a!["threshold"]!["kind"]!.ToString() is "Amount" or "3");
    }

    [Fact]
    public async Task SpendCapApi_OneCapAcrossMeters_StopsTheAssistant_AndBadInputIs400()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");

        // Starter: ai_messages 100 included, 0.02 each, at most 1000 and 25.00: its usage costs at most 18.00.
        var before = JsonNode.Parse(await session.Client.GetStringAsync("/api/spend-cap", Ct))!;
        Assert.Null(before["spendCap"]);
        Assert.Equal(18m, before["planCeiling"]!.GetValue<decimal>());
        var tooHigh = await session.Client.PutAsJsonAsync("/api/spend-cap", new { spendCap = 18.01m }, Ct);
        var negative = await session.Client.PutAsJsonAsync("/api/spend-cap", new { spendCap = -1m }, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, tooHigh.StatusCode);
        Assert.Contains("spendCap", await tooHigh.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, negative.StatusCode);

        var saved = await session.Client.PutAsJsonAsync("/api/spend-cap", new { spendCap = 0.02m }, Ct);
        Assert.Equal(HttpStatusCode.OK, saved.StatusCode);
        Assert.Equal(0.02m, JsonNode.Parse(await saved.Content.ReadAsStringAsync(Ct))!["spendCap"]!.GetValue<decimal>());
        await using (var db = app.CreateDbContext())
        {
            var now = DateTimeOffset.UtcNow;
            db.UsageEvents.AddRange(Enumerable.Range(0, 100).Select(i => new UsageBilling.EntityFrameworkCore.Entities.UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = "ai_messages", Quantity = 1, OccurredAt = now, CreatedAt = now }));
            await db.SaveChangesAsync(Ct);
        }

        var ok = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "one paid", requestId = Guid.NewGuid().ToString("N") }, Ct);
        var refused = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "two paid", requestId = Guid.NewGuid().ToString("N") }, Ct);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Contains("whole account", await refused.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task UsagePage_SpendControlForm_SavesCapAndThresholds_AndRejectsBadInput()
    {
        var (session, _) = await app.SignUpAsync();
        using var __ = session;
        await session.ChoosePlanAsync("starter");

        var fields = UserSession.FieldsOf(await session.GetPageAsync("/usage"), "limits");
        fields["Form.SpendCap"] = "30";   // above the plan's 25.00
        fields["Form.Percents"] = "50, 90";
        fields["Form.Amounts"] = "";
        var refused = await UserSession.ParseAsync(await session.PostFormAsync("/usage", fields));
        Assert.Contains("above the plan's spend limit", refused.QuerySelector("[data-testid='limits-message']")?.TextContent, StringComparison.Ordinal);

        fields["Form.SpendCap"] = "12.5";
        fields["Form.Amounts"] = "5";
        var saved = await UserSession.ParseAsync(await session.PostFormAsync("/usage", fields));
        Assert.Contains("Saved", saved.QuerySelector("[data-testid='limits-message']")?.TextContent, StringComparison.Ordinal);

        var settings = JsonNode.Parse(await session.Client.GetStringAsync("/api/limits/ai_messages", Ct))!;
        Assert.Equal(12.5m, settings["spendCap"]!.GetValue<decimal>());
        Assert.Equal(3, settings["alerts"]!.AsArray().Count);
        var page = await session.GetPageAsync("/usage");
        Assert.Equal("12.5", page.QuerySelector("[data-testid='spend-cap']")?.GetAttribute("value"));
        Assert.Equal("50, 90", page.QuerySelector("[data-testid='alert-percents']")?.GetAttribute("value"));
    }

    [Fact]
    public async Task UsagePage_AccountCap_SavedAndShownAgainstUsage_BadCapSavesNothing()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");

        // Starter's usage costs at most 18.00: a higher account cap is refused, and the meter cap in the same post is not saved either.
        var fields = UserSession.FieldsOf(await session.GetPageAsync("/usage"), "limits");
        fields["Form.SpendCap"] = "10";
        fields["Form.AccountCap"] = "18.01";
        var refused = await UserSession.ParseAsync(await session.PostFormAsync("/usage", fields));
        Assert.Contains("above the most this plan's usage can cost", refused.QuerySelector("[data-testid='limits-message']")?.TextContent, StringComparison.Ordinal);
        fields["Form.AccountCap"] = "abc";
        var notAnAmount = await UserSession.ParseAsync(await session.PostFormAsync("/usage", fields));
        Assert.Contains("'abc' is not an amount for the account cap", notAnAmount.QuerySelector("[data-testid='limits-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Null(JsonNode.Parse(await session.Client.GetStringAsync("/api/limits/ai_messages", Ct))!["spendCap"]);
        Assert.Null(JsonNode.Parse(await session.Client.GetStringAsync("/api/spend-cap", Ct))!["spendCap"]);

        fields["Form.SpendCap"] = "";
        fields["Form.AccountCap"] = "0.04";
        var saved = await UserSession.ParseAsync(await session.PostFormAsync("/usage", fields));
        Assert.Contains("more than 0.04 USD", saved.QuerySelector("[data-testid='limits-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Equal(0.04m, JsonNode.Parse(await session.Client.GetStringAsync("/api/spend-cap", Ct))!["spendCap"]!.GetValue<decimal>());
        Assert.Contains("0.00 USD of your 0.04 USD account cap: 0.04 USD left", saved.QuerySelector("[data-testid='account-cap-status']")?.TextContent, StringComparison.Ordinal);

        // 100 messages are included; two more cost 0.04 and reach the cap.
        await using (var db = app.CreateDbContext())
        {
            var now = DateTimeOffset.UtcNow;
            db.UsageEvents.AddRange(Enumerable.Range(0, 102).Select(i => new UsageBilling.EntityFrameworkCore.Entities.UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = "ai_messages", Quantity = 1, OccurredAt = now, CreatedAt = now }));
            await db.SaveChangesAsync(Ct);
        }

        var page = await session.GetPageAsync("/usage");
        Assert.Equal("0.04", page.QuerySelector("[data-testid='account-spend-cap']")?.GetAttribute("value"));
        Assert.Contains("0.04 USD of your 0.04 USD account cap: reached, usage stops until", page.QuerySelector("[data-testid='account-cap-status']")?.TextContent, StringComparison.Ordinal);
        var stopped = await session.Client.PostAsJsonAsync("/api/assistant/messages", new { message = "over the cap", requestId = Guid.NewGuid().ToString("N") }, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, stopped.StatusCode);
    }

    [Fact]
    public async Task OtherAccountsIds_AnswerNotFound()
    {
        var (alice, aliceId) = await app.SignUpAsync();
        var (bob, bobId) = await app.SignUpAsync();
        using var _ = alice;
        using var __ = bob;
        await alice.ChoosePlanAsync("starter");
        await alice.SendMessageAsync("private");

        Assert.Equal(HttpStatusCode.NotFound, (await bob.Client.GetAsync($"/api/users/{aliceId}/usage", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await bob.Client.GetAsync($"/api/users/{aliceId}/subscription", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await bob.Client.GetAsync($"/api/users/{bobId}/usage", Ct)).StatusCode);
        var own = await alice.Client.GetFromJsonAsync<UsageDto>($"/api/users/{aliceId}/usage", Ct);
        Assert.Equal(1, own!.Meters.Single(m => m.Meter == "ai_messages").Used);
        Assert.Equal(0, (await bob.GetUsageAsync()).Meters.Single(m => m.Meter == "ai_messages").Used);

        using var anonymous = app.CreateSession();
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.Client.GetAsync($"/api/users/{aliceId}/usage", Ct)).StatusCode);
        var page = await anonymous.Client.GetAsync("/usage", Ct);
        Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
        Assert.Contains("/account/login", page.Headers.Location?.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task FormPostWithoutAntiforgeryToken_IsRejectedAndRecordsNothing()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        var fields = await session.AssistantFormAsync("forged");
        fields.Remove("__RequestVerificationToken");

        var response = await session.PostFormAsync("/assistant", fields);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        await using var db = app.CreateDbContext();
        Assert.Equal(0, await db.UsageEvents.CountAsync(e => e.UserId == userId, Ct));
    }

    [Fact]
    public async Task UsagePage_ShowsUsageCostPeriodAndChart()
    {
        var (session, _) = await app.SignUpAsync();
        using var __ = session;
        await session.ChoosePlanAsync("tiny");
        for (var i = 0; i < 4; i++)
        {
            await session.SendMessageAsync($"m{i}");
        }

        var page = await session.GetPageAsync("/usage");

        Assert.Equal("4", page.QuerySelector("[data-testid='used-ai_messages']")?.TextContent);
        Assert.Equal("1", page.QuerySelector("[data-testid='remaining-ai_messages']")?.TextContent);
        Assert.Equal("warn", page.QuerySelector("[data-testid='usage-bar-ai_messages']")?.GetAttribute("data-level"));
        Assert.NotNull(page.QuerySelector("[data-testid='warning-ai_messages']"));
        Assert.Equal("5.00 USD", page.QuerySelector("[data-testid='projected-total']")?.TextContent);
        Assert.Equal("4", page.QuerySelector("[data-testid='pending-ai_messages']")?.TextContent);
        Assert.Contains("Nothing reported", page.QuerySelector("[data-testid='reported-ai_messages']")?.TextContent, StringComparison.Ordinal);
        var bars = page.QuerySelectorAll("[data-testid='chart-ai_messages'] rect.bar");
        Assert.Equal(4, bars.Sum(b => long.Parse(b.GetAttribute("data-value")!, System.Globalization.CultureInfo.InvariantCulture)));

        // Two more: past the allowance, the bar turns red and the overage is priced.
        await session.SendMessageAsync("m4");
        await session.SendMessageAsync("m5");
        page = await session.GetPageAsync("/usage");
        Assert.Equal("over", page.QuerySelector("[data-testid='usage-bar-ai_messages']")?.GetAttribute("data-level"));
        Assert.Equal("0.50 USD", page.QuerySelector("[data-testid='cost-ai_messages']")?.TextContent);
        Assert.Equal("5.50 USD", page.QuerySelector("[data-testid='projected-total']")?.TextContent);
    }

    [Fact]
    public async Task Flush_ReportsUsageAndThePageSaysSo()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await session.SendMessageAsync("one");
        await session.SendMessageAsync("two");

        var result = await app.Services.GetRequiredService<IUsageFlusher>().FlushCustomerAsync(userId, Ct);

        Assert.Equal(1, result.ReportsSent);
        var page = await session.GetPageAsync("/usage");
        Assert.Equal("0", page.QuerySelector("[data-testid='pending-ai_messages']")?.TextContent);
        Assert.Contains("Reported to Stripe as of", page.QuerySelector("[data-testid='reported-ai_messages']")?.TextContent, StringComparison.Ordinal);
        await using var db = app.CreateDbContext();
        var customer = await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct);
        var events = await app.Stripe.Emulator!.Admin.GetMeterEventsAsync(customer.StripeCustomerId, "ai_messages", Ct);
        Assert.Equal(2m, events.Sum(e => e.Value));
    }

    [Fact]
    public async Task Webhook_SubscriptionUpdated_AppliesStripesStateNotThePayload_AndIgnoresReplay()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await using var db = app.CreateDbContext();
        var item = await db.SubscriptionItems.FirstAsync(i => i.UserId == userId && i.Meter == "ai_messages", Ct);
        var stripeEnd = item.CurrentPeriodEnd.ToUnixTimeSeconds();

        // A payload that disagrees with Stripe (an old or forged snapshot): the subscription is read from Stripe instead.
        var subscription = await SubscriptionJsonAsync(item.SubscriptionId);
        foreach (var i in subscription["items"]!["data"]!.AsArray())
        {
            i!["current_period_end"] = stripeEnd + (3 * 86_400);
        }

        var eventId = $"evt_test_{Guid.NewGuid():N}";
        var payload = EventJson(eventId, "customer.subscription.updated", subscription);
        var first = await PostWebhookAsync(session, payload, Sign(payload));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Contains("handled", await first.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(stripeEnd, (await Reload(item.Id)).CurrentPeriodEnd.ToUnixTimeSeconds());

        // Stripe's state changes (the plan tag, outside the app): the same event id again changes nothing…
        await app.StripeClient.V1.Subscriptions.UpdateAsync(
            item.SubscriptionId,
            new SubscriptionUpdateOptions { Metadata = new Dictionary<string, string> { [UsageBillingMetadata.PlanKey] = "pro" } },
            cancellationToken: Ct);
        var replay = await PostWebhookAsync(session, payload, Sign(payload));
        Assert.Equal(HttpStatusCode.OK, replay.StatusCode);
        Assert.Contains("duplicate", await replay.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal("starter", (await ReloadCustomer(userId)).PlanId);

        // …and a new event brings Stripe's state in.
        var next = EventJson($"evt_test_{Guid.NewGuid():N}", "customer.subscription.updated", subscription);
        Assert.Equal(HttpStatusCode.OK, (await PostWebhookAsync(session, next, Sign(next))).StatusCode);
        Assert.Equal("pro", (await ReloadCustomer(userId)).PlanId);
    }

    [Fact]
    public async Task Webhook_SubscriptionDeleted_RemovesItemsAndPlan_OnlyWhenStripeSaysSo()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await using var db = app.CreateDbContext();
        var subscriptionId = (await db.SubscriptionItems.FirstAsync(i => i.UserId == userId, Ct)).SubscriptionId;
        var subscription = await SubscriptionJsonAsync(subscriptionId);
        subscription["status"] = "canceled";

        // A "deleted" snapshot for a subscription Stripe still has active (a forged or misrouted event): nothing goes.
        var forged = EventJson($"evt_test_{Guid.NewGuid():N}", "customer.subscription.deleted", subscription);
        Assert.Equal(HttpStatusCode.OK, (await PostWebhookAsync(session, forged, Sign(forged))).StatusCode);
        Assert.True(await db.SubscriptionItems.AnyAsync(i => i.UserId == userId, Ct));

        // Cancelled in Stripe (e.g. from the dashboard): the event's delivery mirrors it.
        await app.StripeClient.V1.Subscriptions.CancelAsync(subscriptionId, cancellationToken: Ct);
        var payload = EventJson($"evt_test_{Guid.NewGuid():N}", "customer.subscription.deleted", subscription);
        var response = await PostWebhookAsync(session, payload, Sign(payload));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var after = app.CreateDbContext();
        Assert.False(await after.SubscriptionItems.AnyAsync(i => i.UserId == userId, Ct));
        Assert.Null((await after.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct)).PlanId);
    }

    [Fact]
    public async Task Webhook_BadSignature_Rejected400AndNothingStored()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await using var db = app.CreateDbContext();
        var item = await db.SubscriptionItems.FirstAsync(i => i.UserId == userId, Ct);
        var subscription = await SubscriptionJsonAsync(item.SubscriptionId);
        subscription["status"] = "canceled";
        var eventId = $"evt_test_{Guid.NewGuid():N}";
        var payload = EventJson(eventId, "customer.subscription.deleted", subscription);

        var wrongSecret = await PostWebhookAsync(session, payload, EventUtility.GenerateSignatureHeader(payload, "whsec_not_the_secret"));
        var tampered = await PostWebhookAsync(session, payload.Replace("canceled", "active", StringComparison.Ordinal), Sign(payload));
        var missing = await PostWebhookAsync(session, payload, null);

        Assert.Equal(HttpStatusCode.BadRequest, wrongSecret.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, tampered.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.False(await db.ProcessedWebhookEvents.AnyAsync(e => e.Id == eventId, Ct));
        Assert.True(await db.SubscriptionItems.AnyAsync(i => i.Id == item.Id, Ct));
    }

    [Fact]
    public async Task Webhook_StaleTimestamp_Rejected400AndNothingStored()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await using var db = app.CreateDbContext();
        var item = await db.SubscriptionItems.FirstAsync(i => i.UserId == userId, Ct);
        var subscription = await SubscriptionJsonAsync(item.SubscriptionId);
        subscription["status"] = "canceled";
        var eventId = $"evt_test_{Guid.NewGuid():N}";
        var payload = EventJson(eventId, "customer.subscription.deleted", subscription);
        var tenMinutesAgo = DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeSeconds();

        var response = await PostWebhookAsync(session, payload, EventUtility.GenerateSignatureHeader(payload, WebApp.WebhookSecret, tenMinutesAgo));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.False(await db.ProcessedWebhookEvents.AnyAsync(e => e.Id == eventId, Ct));
        Assert.True(await db.SubscriptionItems.AnyAsync(i => i.Id == item.Id, Ct));
    }

    [Fact]
    public async Task Webhook_UnknownType_AcknowledgedAndNothingStored()
    {
        using var session = app.CreateSession();
        var eventId = $"evt_test_{Guid.NewGuid():N}";
        var payload = EventJson(eventId, "charge.refunded", new JsonObject { ["id"] = "ch_1", ["object"] = "charge" });

        var response = await PostWebhookAsync(session, payload, Sign(payload));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("ignored", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        await using var db = app.CreateDbContext();
        Assert.False(await db.ProcessedWebhookEvents.AnyAsync(e => e.Id == eventId, Ct));
    }

    [Fact]
    public async Task Webhook_InvoiceCreated_FlushesThatCustomerAtOnce()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await session.SendMessageAsync("bill me");
        await using var db = app.CreateDbContext();
        var customer = await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct);
        var invoice = new JsonObject { ["id"] = $"in_test_{Guid.NewGuid():N}", ["object"] = "invoice", ["customer"] = customer.StripeCustomerId, ["status"] = "draft" };
        var payload = EventJson($"evt_test_{Guid.NewGuid():N}", "invoice.created", invoice);

        var response = await PostWebhookAsync(session, payload, Sign(payload));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(await db.UsageEvents.AnyAsync(e => e.UserId == userId && !db.UsageReports.Any(r => r.Id == e.ReportId && r.Status == UsageReportStatus.Sent), Ct));
        var events = await app.Stripe.Emulator!.Admin.GetMeterEventsAsync(customer.StripeCustomerId, "ai_messages", Ct);
        Assert.Equal(1m, events.Sum(e => e.Value));
    }

    [Fact]
    public async Task Webhook_MeterErrorReport_MarksReportDeadAndOperatorSeesIt()
    {
        var (session, userId) = await app.SignUpAsync();
        using var _ = session;
        await session.ChoosePlanAsync("starter");
        await session.SendMessageAsync("soon rejected");
        await using var db = app.CreateDbContext();
        var customer = await db.BillingCustomers.SingleAsync(c => c.UserId == userId, Ct);

        // Stripe accepts the meter event, then finds its customer gone and reports it asynchronously as a
        // thin event (an endpoint that refuses connections records the event's id in the delivery log).
        await app.StripeClient.V1.Customers.DeleteAsync(customer.StripeCustomerId, cancellationToken: Ct);
        var admin = app.Stripe.Emulator!.Admin;
        await admin.AddWebhookEndpointAsync(new Uri("http://127.0.0.1:9/thin"), [StripeWebhookEvents.MeterErrorReportTriggered], Ct);
        await app.Services.GetRequiredService<IUsageFlusher>().FlushCustomerAsync(userId, Ct);
        var report = await db.UsageReports.SingleAsync(r => r.StripeCustomerId == customer.StripeCustomerId, Ct);
        Assert.Equal(UsageReportStatus.Sent, report.Status);
        string? thinId = null;
        for (var i = 0; i < 100 && thinId is null; i++)
        {
            thinId = (await admin.GetWebhookDeliveriesAsync(Ct)).FirstOrDefault(d => d.EventType == StripeWebhookEvents.MeterErrorReportTriggered)?.EventId;
            await Task.Delay(50, Ct);
        }

        Assert.NotNull(thinId);

        // What an event destination delivers: ids only; the app fetches the event through Stripe.net.
        var thin = new JsonObject
        {
            ["id"] = thinId,
            ["object"] = "v2.core.event",
            ["type"] = StripeWebhookEvents.MeterErrorReportTriggered,
            ["created"] = DateTimeOffset.UtcNow.ToString("O"),
            ["livemode"] = false,
            ["context"] = null,
        }.ToJsonString();

        var response = await PostWebhookAsync(session, thin, Sign(thin));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var after = app.CreateDbContext();
        var dead = await after.UsageReports.SingleAsync(r => r.Id == report.Id, Ct);
        Assert.Equal(UsageReportStatus.Dead, dead.Status);
        Assert.Contains("meter_event_customer_not_found", dead.LastError, StringComparison.Ordinal);

        var (operatorSession, operatorId) = await app.SignUpAsync();
        using var ___ = operatorSession;
        Assert.Equal(HttpStatusCode.Redirect, (await operatorSession.Client.GetAsync("/operator", Ct)).StatusCode);
        await app.AddToRoleAsync(operatorId, "Operator");
        Assert.Equal(HttpStatusCode.Redirect, (await operatorSession.LoginAsync(await EmailOf(operatorId), "correct-horse-1")).StatusCode);
        var page = await operatorSession.GetPageAsync("/operator");
        Assert.Contains(report.Id.ToString(), page.QuerySelector("[data-testid='reports']")?.TextContent, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Operator_CreatesApiKey_ServiceRecordsOverIngestionApi_VoidsIt_RevokedKeyRefused()
    {
        var (customer, userId) = await app.SignUpAsync();
        using var _ = customer;
        await customer.ChoosePlanAsync("starter");
        var (operatorSession, operatorId) = await app.SignUpAsync();
        using var __ = operatorSession;
        await app.AddToRoleAsync(operatorId, "Operator");
        Assert.Equal(HttpStatusCode.Redirect, (await operatorSession.LoginAsync(await EmailOf(operatorId), "correct-horse-1")).StatusCode);

        // Created on the operator page: the secret is shown once, scoped to the customer's account.
        var fields = UserSession.FieldsOf(await operatorSession.GetPageAsync("/operator"), "create-key");
        fields["NewKey.Name"] = "billing worker";
        fields["NewKey.Account"] = userId.ToString();
        var created = await UserSession.ParseAsync(await operatorSession.PostFormAsync("/operator", fields));
        var secret = created.QuerySelector("[data-testid='api-key-secret'] code")?.TextContent ?? throw new InvalidOperationException(created.Body?.OuterHtml);
        Assert.StartsWith("ubk_", secret, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, (await operatorSession.GetPageAsync("/operator")).Body!.OuterHtml, StringComparison.Ordinal);

        using var service = app.CreateSession();
        async Task<HttpResponseMessage> IngestAsync(string key)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/usage")
            {
                Content = JsonContent.Create(new { events = new[] { new { account_id = userId, meter = "ai_messages", quantity = 3, idempotency_key = key } } }),
            };
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", secret);
            return await service.Client.SendAsync(request, Ct);
        }

        var recorded = await IngestAsync("job-1");
        Assert.Equal(HttpStatusCode.OK, recorded.StatusCode);
        var result = (await recorded.Content.ReadFromJsonAsync<JsonObject>(Ct))!["results"]![0]!;
        Assert.Equal("recorded", result["status"]!.GetValue<string>());
        var eventId = result["event_id"]!.GetValue<Guid>();
        Assert.Equal(3, (await customer.GetUsageAsync()).Meters.Single(m => m.Meter == "ai_messages").Used);

        // Voided on the operator page: out of the customer's usage, audited with the operator's name.
        var voidFields = UserSession.FieldsOf(await operatorSession.GetPageAsync("/operator"), "void");
        voidFields["Void.EventId"] = eventId.ToString();
        voidFields["Void.Reason"] = "test traffic";
        var voided = await UserSession.ParseAsync(await operatorSession.PostFormAsync("/operator", voidFields));
        Assert.Contains("Voided 3", voided.QuerySelector("[data-testid='void-message']")?.TextContent, StringComparison.Ordinal);
        Assert.Contains("test traffic", voided.QuerySelector("[data-testid='corrections']")?.TextContent, StringComparison.Ordinal);
        Assert.Equal(0, (await customer.GetUsageAsync()).Meters.Single(m => m.Meter == "ai_messages").Used);

        // Revoked on the page: the service is refused from then on.
        var key = (await app.Services.GetRequiredService<IUsageApiKeys>().ListAsync(Ct)).Single(k => k.UserId == userId);
        var revokeFields = UserSession.FieldsOf(await operatorSession.GetPageAsync("/operator"), $"revoke-{key.Id}");
        Assert.Equal(HttpStatusCode.OK, (await operatorSession.PostFormAsync("/operator", revokeFields)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await IngestAsync("job-2")).StatusCode);

        // A customer is not an operator: the page is not theirs.
        Assert.Equal(HttpStatusCode.Redirect, (await customer.Client.GetAsync("/operator", Ct)).StatusCode);
    }

    [Fact]
    public async Task Healthz_ReportsDatabaseAndFlushLag()
    {
        using var session = app.CreateSession();

        var response = await session.Client.GetAsync("/healthz", Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        Assert.Equal("Healthy", body["checks"]!["database"]!["status"]!.GetValue<string>());
        Assert.NotNull(body["checks"]!["usagebilling-flush"]);
    }

    private async Task<string> EmailOf(Guid userId)
    {
        await using var db = app.CreateDbContext();
        return (await db.Users.SingleAsync(u => u.Id == userId, Ct)).Email!;
    }

    private async Task<ItemView> Reload(string itemId)
    {
        await using var db = app.CreateDbContext();
        var row = await db.SubscriptionItems.AsNoTracking().SingleAsync(i => i.Id == itemId, Ct);
        return new(row.Id, row.CurrentPeriodEnd);
    }

    private async Task<BillingCustomer> ReloadCustomer(Guid userId)
    {
        await using var db = app.CreateDbContext();
        return await db.BillingCustomers.AsNoTracking().SingleAsync(c => c.UserId == userId, Ct);
    }

    private async Task<JsonObject> SubscriptionJsonAsync(string subscriptionId)
    {
        var raw = await app.StripeClient.RawRequestAsync(HttpMethod.Get, $"/v1/subscriptions/{subscriptionId}", cancellationToken: Ct);
        return JsonNode.Parse(raw.Content)!.AsObject();
    }

    private static string EventJson(string id, string type, JsonObject data) => new JsonObject
    {
        ["id"] = id,
        ["object"] = "event",
        ["api_version"] = StripeConfiguration.ApiVersion,
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["data"] = new JsonObject { ["object"] = data.DeepClone() },
        ["livemode"] = false,
        ["pending_webhooks"] = 1,
        ["request"] = new JsonObject { ["id"] = null, ["idempotency_key"] = null },
        ["type"] = type,
    }.ToJsonString();

    private static string Sign(string payload) => EventUtility.GenerateSignatureHeader(payload, WebApp.WebhookSecret);

    private static async Task<HttpResponseMessage> PostWebhookAsync(UserSession session, string payload, string? signature)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/webhooks/stripe") { Content = new StringContent(payload, System.Text.Encoding.UTF8, "application/json") };
        if (signature is not null)
        {
            request.Headers.Add("Stripe-Signature", signature);
        }

        return await session.Client.SendAsync(request, Ct);
    }
}

public sealed class SqliteWebAppTests(SqliteWebApp app) : WebAppComplianceTests<SqliteWebApp>(app);

public sealed class PostgresWebAppTests(PostgresWebApp app) : WebAppComplianceTests<PostgresWebApp>(app);

public sealed record ItemView(string Id, DateTimeOffset CurrentPeriodEnd);
