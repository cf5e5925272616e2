using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Hosting;
using UsageBilling.Web.Tests.Infrastructure;

namespace UsageBilling.Web.Tests;

/// <summary>The sample as an attacker probes it: enumeration, brute force, stale cookies, headers, error bodies.</summary>
public sealed class SecurityTests(SqliteWebApp app) : IClassFixture<SqliteWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SignIn_UnknownAccountAndWrongPassword_SameAnswerAndSimilarTime()
    {
        var (session, _) = await app.SignUpAsync();
        using var _ = session;
        var known = (await EmailOfSessionAsync(session))!;
        using var probe = app.CreateSession();

        // Warm both paths once, then alternate so machine noise hits both alike.
        await probe.LoginAsync(known, "wrong-password-123");
        await probe.LoginAsync($"nobody-{Guid.NewGuid():N}@example.com", "wrong-password-123");
        var wrong = new List<double>();
        var unknown = new List<double>();
        string? wrongText = null, unknownText = null;
        for (var i = 0; i < 8; i++)
        {
            var (w, wt) = await TimedLoginAsync(probe, known);
            var (u, ut) = await TimedLoginAsync(probe, $"nobody-{Guid.NewGuid():N}@example.com");
            wrong.Add(w);
            unknown.Add(u);
            wrongText = wt;
            unknownText = ut;
        }

        Assert.Equal(wrongText, unknownText);
        var ratio = Median(unknown) / Median(wrong);
        Assert.True(ratio is > 0.5 and < 2.0, $"unknown account {Median(unknown):F1} ms vs wrong password {Median(wrong):F1} ms (ratio {ratio:F2})");
    }

    [Fact]
    public async Task SignIn_LockedAccount_AnswersLikeAnyFailure_AndNeverEchoesThePassword()
    {
        var (session, _) = await app.SignUpAsync();
        using var _ = session;
        var email = (await EmailOfSessionAsync(session))!;
        using var probe = app.CreateSession();
        for (var i = 0; i < 20; i++)
        {
            await probe.LoginAsync(email, "not-the-password-" + i);
        }

        var locked = await ErrorTextAsync(await probe.LoginAsync(email, "correct-horse-1"));
        var response = await probe.LoginAsync($"nobody-{Guid.NewGuid():N}@example.com", "secret-typed-password");
        var unknownBody = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal(await ErrorTextAsync(response), locked);
        Assert.DoesNotContain("secret-typed-password", unknownBody, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SignUp_ExistingEmail_DoesNotSayItIsTaken_AndShortPasswordsRefused()
    {
        var (session, _) = await app.SignUpAsync();
        using var _ = session;
        var email = (await EmailOfSessionAsync(session))!;
        using var other = app.CreateSession();

        var taken = await PostRegisterAsync(other, email, "another-long-password");
        var weak = await PostRegisterAsync(other, $"new-{Guid.NewGuid():N}@example.com", "password1");

        var takenText = await taken.Content.ReadAsStringAsync(Ct);
        Assert.Equal(HttpStatusCode.OK, taken.StatusCode);
        Assert.DoesNotContain("already taken", takenText, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("cannot be used to sign up", takenText, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, weak.StatusCode);
        Assert.Contains("12 to 128 characters", await weak.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SignOut_RevokesTheCookie_EvenACopiedOne()
    {
        var (session, _) = await app.SignUpAsync();
        using var _ = session;
        var email = (await EmailOfSessionAsync(session))!;
        var login = await session.LoginAsync(email, "correct-horse-1");
        var cookie = login.Headers.GetValues("Set-Cookie").Select(c => c.Split(';')[0]).Single(c => c.StartsWith("ub_auth=", StringComparison.Ordinal));
        using var thief = app.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { HandleCookies = false, AllowAutoRedirect = false, BaseAddress = new Uri("https://localhost") });
        Assert.Equal(HttpStatusCode.OK, (await GetWithCookieAsync(thief, cookie)).StatusCode);

        var home = await session.GetPageAsync("/");
        var token = home.QuerySelector("form[action='/account/logout'] input[name='__RequestVerificationToken']")!.GetAttribute("value")!;
        Assert.Equal(HttpStatusCode.Redirect, (await session.PostFormAsync("/account/logout", new() { ["__RequestVerificationToken"] = token })).StatusCode);

        Assert.Equal(HttpStatusCode.Unauthorized, (await GetWithCookieAsync(thief, cookie)).StatusCode);
    }

    [Fact]
    public async Task Responses_CarrySecurityHeaders_AndTheAuthCookieIsSecure()
    {
        using var session = app.CreateSession();
        var page = await session.Client.GetAsync("/account/login", Ct);

        var csp = string.Join(";", page.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("default-src 'self'", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe-inline", csp, StringComparison.Ordinal);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Equal("strict-origin-when-cross-origin", page.Headers.GetValues("Referrer-Policy").Single());
        Assert.Equal("DENY", page.Headers.GetValues("X-Frame-Options").Single());

        var (signedIn, _) = await app.SignUpAsync();
        using var __ = signedIn;
        var email = (await EmailOfSessionAsync(signedIn))!;
        var login = await signedIn.LoginAsync(email, "correct-horse-1");
        var auth = login.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("ub_auth=", StringComparison.Ordinal));
        Assert.Contains("secure", auth, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("httponly", auth, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task NotFound_BrowsersGetThePage_ApiCallersProblemDetails()
    {
        using var session = app.CreateSession();
        using var browser = new HttpRequestMessage(HttpMethod.Get, "/no/such/page");
        browser.Headers.Accept.ParseAdd("text/html,application/xhtml+xml");

        var page = await session.Client.SendAsync(browser, Ct);
        var api = await session.Client.GetAsync("/api/no/such/thing", Ct);

        Assert.Equal(HttpStatusCode.NotFound, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("There is nothing here", await page.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.True(api.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Unauthorized);
    }

    private static async Task<HttpResponseMessage> PostRegisterAsync(UserSession session, string email, string password)
    {
        var fields = UserSession.FieldsOf(await session.GetPageAsync("/account/register"), "register");
        fields["Input.Email"] = email;
        fields["Input.Password"] = password;
        return await session.PostFormAsync("/account/register", fields);
    }

    private static async Task<HttpResponseMessage> GetWithCookieAsync(HttpClient client, string cookie)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/usage");
        request.Headers.Add("Cookie", cookie);
        return await client.SendAsync(request, Ct);
    }

    private static async Task<(double Ms, string? Text)> TimedLoginAsync(UserSession session, string email)
    {
        var fields = UserSession.FieldsOf(await session.GetPageAsync("/account/login"), "login");
        fields["Input.Email"] = email;
        fields["Input.Password"] = "wrong-password-123";
        var watch = Stopwatch.StartNew();
        var response = await session.PostFormAsync("/account/login", fields);
        var ms = watch.Elapsed.TotalMilliseconds;
        return (ms, await ErrorTextAsync(response));
    }

    private static async Task<string?> ErrorTextAsync(HttpResponseMessage response) =>
        (await UserSession.ParseAsync(response)).QuerySelector("[data-testid='errors']")?.TextContent.Trim();

    private async Task<string?> EmailOfSessionAsync(UserSession session)
    {
        var usage = await session.GetUsageAsync();
        await using var db = app.CreateDbContext();
        return db.Users.Single(u => u.Id == usage.UserId).Email;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}

/// <summary>Low rate limits and the Development environment (where the developer page would leak).</summary>
public sealed class LimitedWebApp() : WebApp(Provider.Sqlite)
{
    protected override void ConfigureSettings(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Development");
        builder.UseSetting("App:SeedDemo", "false");
        builder.UseSetting("Security:SignInPerClient", "6");
        builder.UseSetting("Security:SignInPerAccount", "3");
        builder.UseSetting("Security:BillablePerAccount", "4");
    }
}

/// <summary>Rate limits and error bodies, on their own app.</summary>
public sealed class RateLimitAndErrorTests(LimitedWebApp app) : IClassFixture<LimitedWebApp>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task SignIn_Burst_429PerAccountThenPerClient_WithProblemDetails()
    {
        using var session = app.CreateSession();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            statuses.Add((await session.LoginAsync("victim@example.com", "guess-number-" + i)).StatusCode);
        }

        // The 4th try on one account is refused; another account still gets an answer (per account) …
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        Assert.Equal(HttpStatusCode.OK, (await session.LoginAsync("other@example.com", "guess-x")).StatusCode);

        // … until this client's budget (6 a minute, whichever accounts it tries) is spent too.
        HttpResponseMessage burst = null!;
        var tries = 0;
        do
        {
            burst = await session.LoginAsync($"spray-{tries}@example.com", "guess-z");
            tries++;
        }
        while (burst.StatusCode != HttpStatusCode.TooManyRequests && tries < 10);

        Assert.Equal(HttpStatusCode.TooManyRequests, burst.StatusCode);
        Assert.True(tries <= 2, $"the client limit of 6 let {tries + 5} attempts through");
        Assert.Equal("application/problem+json", burst.Content.Headers.ContentType?.MediaType);
        Assert.True(burst.Headers.RetryAfter is not null || burst.Headers.Contains("Retry-After"));
    }

    [Fact]
    public async Task Api_MalformedJson_InDevelopment_ProblemDetailsNamingTheField_NoStackTraceNoCookie()
    {
        var (session, _) = await app.SignUpAsync();
        using var _ = session;
        using var content = new StringContent("""{"message": 42, "requestId": """, Encoding.UTF8, "application/json");

        var response = await session.Client.PostAsync("/api/assistant/messages", content, Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("body", body, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("$.", body, StringComparison.Ordinal);
        Assert.DoesNotContain("ub_auth", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Cookie", body, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
    }
}
